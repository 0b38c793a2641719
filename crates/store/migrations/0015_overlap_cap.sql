-- An overlap is at most 90 days on every path (key rotation, rotation start, rotation
-- policy). Policies and unfinished rotations stored with a longer one before this limit held
-- everywhere are brought down to it, so their next rotation neither fails nor keeps an old
-- key valid for longer.
UPDATE rotation_policies SET overlap_seconds = 7776000 WHERE overlap_seconds > 7776000;
UPDATE rotations SET overlap_seconds = 7776000 WHERE overlap_seconds > 7776000 AND finished_at IS NULL;
