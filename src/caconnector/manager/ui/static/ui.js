// The web UI's only script: modal dialogs, copy buttons, and tables that refresh themselves.
// Every page works without it (dialogs are then plain sections, tables change on reload).
"use strict";

const POLL_MS = 2000;

function openDialogs() {
  for (const dialog of document.querySelectorAll("dialog[data-modal]")) {
    // Rendered open (so it shows without script); made modal here so focus stays inside it. Removing
    // the attribute, unlike close(), fires no close event (which would leave the page).
    dialog.removeAttribute("open");
    dialog.showModal();
    dialog.addEventListener("close", () => { window.location.assign(dialog.dataset.close); });
  }
}

function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const text = "value" in source ? source.value : source.textContent;
      const label = button.firstChild;
      try {
        await navigator.clipboard.writeText(text);
        label.textContent = "Copied";
      } catch (err) {
        // No clipboard access (plain HTTP on another host): select it for Ctrl+C instead.
        if (source.select) { source.select(); } else { window.getSelection().selectAllChildren(source); }
        label.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { label.textContent = "Copy"; }, 2000);
    });
  }
}

// An element with data-poll=URL is refreshed from that URL: its content (a table body), or the whole
// element when it has data-replace (a status block that stops polling once settled).
function poll(element) {
  const replace = element.hasAttribute("data-replace");
  const timer = setInterval(async () => {
    let response;
    try {
      response = await fetch(element.dataset.poll, { headers: { "X-UI-Poll": "1" }, credentials: "same-origin" });
    } catch (err) {
      return; // the manager is restarting: try again next time
    }
    if (response.redirected || !response.ok) { clearInterval(timer); return; } // signed out
    const html = await response.text();
    if (replace) {
      clearInterval(timer);
      const holder = document.createElement("div");
      holder.innerHTML = html.trim();
      const fresh = holder.firstElementChild;
      if (fresh) { element.replaceWith(fresh); if (fresh.dataset.poll) { poll(fresh); } }
    } else if (element.innerHTML.trim() !== html.trim()) {
      element.innerHTML = html;
    }
  }, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  openDialogs();
  copyButtons();
  document.querySelectorAll("[data-poll]").forEach(poll);
});
