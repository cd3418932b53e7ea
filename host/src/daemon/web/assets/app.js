// Flowgate's web app: progressive enhancement only. Every page works without this script; with
// it, times read in the reader's own time zone (their token's `timezone`, or else their browser's), the inbox refreshes itself, and forms are checked
// before they are sent (the server checks them again and its messages are shown the same way).
"use strict";

function localTimes(root) {
  // The zone the reader's token names; none leaves the browser's own.
  const timeZone = document.body.dataset.zone || undefined;
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone });
  for (const el of root.querySelectorAll("time[data-local]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      el.textContent = format.format(when);
      el.title = `${when.toISOString()} (${timeZone || format.resolvedOptions().timeZone})`;
    }
  }
}

function refreshInbox() {
  const box = document.getElementById("inbox-rows");
  if (!box) return;
  const every = Number(box.dataset.refresh) || 5000;
  const url = new URL(window.location.href);
  url.searchParams.set("rows", "1");
  let last = box.innerHTML;
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!answer.ok || answer.redirected) return;
      const html = await answer.text();
      if (html !== last) {
        last = html;
        box.innerHTML = html;
        localTimes(box);
      }
    } catch (_) {
      // Offline for a moment: the next round tries again.
    }
  }, every);
}

function message(input) {
  const v = input.validity;
  const label = input.labels && input.labels[0] ? input.labels[0].textContent.replace("*", "").trim() : "This field";
  if (v.valueMissing) return `${label} is required.`;
  if (v.badInput || v.typeMismatch) return `${label} must be ${input.type === "number" ? "a number" : "valid"}.`;
  if (v.stepMismatch) return `${label} must be a whole number.`;
  if (v.patternMismatch) return `${label} must be an amount like 1250.50.`;
  return input.validationMessage;
}

function validateForms() {
  for (const form of document.querySelectorAll("form[data-validate]")) {
    // A message goes once the person changes what it was about.
    form.addEventListener("input", (event) => {
      const field = event.target.closest(".field");
      const out = field && field.querySelector(".field-error");
      if (out && field.classList.contains("invalid")) {
        out.textContent = "";
        field.classList.remove("invalid");
        event.target.removeAttribute("aria-invalid");
      }
    });
    form.addEventListener("submit", (event) => {
      let first = null;
      for (const input of form.querySelectorAll("input, select, textarea")) {
        const field = input.closest(".field");
        const out = field && field.querySelector(".field-error");
        if (!out) continue;
        if (input.checkValidity()) {
          out.textContent = "";
          field.classList.remove("invalid");
          input.removeAttribute("aria-invalid");
        } else {
          out.textContent = message(input);
          field.classList.add("invalid");
          input.setAttribute("aria-invalid", "true");
          first = first || input;
        }
      }
      if (first) {
        event.preventDefault();
        first.focus();
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  refreshInbox();
  validateForms();
});
