// fedkey console: progressive enhancement only; every page works without it.
// - forms with data-confirm ask before they submit;
// - a typed confirmation (data-expect) enables its submit button once it matches.
"use strict";
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[data-expect]").forEach(function (input) {
    var button = input.form && input.form.querySelector("[data-needs-match]");
    if (!button) { return; }
    var check = function () { button.disabled = input.value.trim() !== input.getAttribute("data-expect"); };
    input.addEventListener("input", check);
    check();
  });
});
