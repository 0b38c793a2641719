#!/usr/bin/env python3
"""Same-run A/B pairs of benchmark binaries: runs each binary's `--bench` in turn, ROUNDS
times, and prints every result table row tagged with the round and the binary, so two builds
are compared on the same machine state (this 2-vCPU machine drifts by 10-30 % over minutes).

Usage:
  cargo bench -p fedkey-server --bench scim_bench --no-run   # build A, then copy
  cp target/release/deps/scim_bench-<hash> /tmp/bench_a      # the binary cargo printed
  ... change, build again, copy to /tmp/bench_b ...
  BENCH_USERS=20000 BENCH_GROUPS=200 BENCH_SECONDS=4 SCIM2_SERVER=none \\
      BENCH_BACKENDS=sqlite,postgres BENCH_OPS=get,username,patch,group \\
      python3 scripts/bench-ab.py 3 /tmp/bench_a /tmp/bench_b

The BENCH_* variables are passed through (see crates/server/benches/scim_bench.rs).
"""
import os
import subprocess
import sys


def main() -> int:
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    rounds, binaries = int(sys.argv[1]), sys.argv[2:]
    for r in range(rounds):
        for b in binaries:
            out = subprocess.run([b, "--bench"], capture_output=True, text=True, env=os.environ)
            if out.returncode != 0:
                print(f"r{r} {b}: exit {out.returncode}\n{out.stderr[-2000:]}", file=sys.stderr)
                return 1
            for line in out.stdout.splitlines():
                # Result rows only: "| request | …" headers and "|---" rules are skipped.
                if line.startswith("| ") and not line.startswith("| request"):
                    print(f"r{r} {os.path.basename(b)} {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
