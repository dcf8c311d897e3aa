/*
 * qa chat widget. Paste into any intranet page:
 *
 *   <script src="http://QA_HOST:7860/widget.js" defer></script>
 *
 * Optional attributes on the tag: data-title="Ask HR", data-position="left".
 * With an access token set on the app: widget.js?token=TOKEN.
 *
 * It shows a launcher button that opens the app's chat in an iframe. Everything is
 * served by the app itself (no CDN). The page's origin must be on the app's
 * allowed_origins list (QA_ALLOWED_ORIGINS); otherwise the widget stays hidden and
 * the browser refuses to frame the chat anyway (CSP frame-ancestors).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__qaWidgetLoaded) return;
  window.__qaWidgetLoaded = true;

  var src = new URL(script.src, window.location.href);
  var base = src.origin + src.pathname.replace(/\/widget\.js$/, "");
  var token = src.searchParams.get("token");
  var title = script.getAttribute("data-title") || "Ask the sources";
  var left = script.getAttribute("data-position") === "left";

  function chatUrl() {
    var url = base + "/?embed=1";
    return token ? url + "&token=" + encodeURIComponent(token) : url;
  }

  // The app's CORS policy answers only for allowed origins, so this request doubles
  // as the allowlist check: a page that may not embed the chat never shows a launcher.
  function check() {
    return fetch(base + "/api/health", { mode: "cors", credentials: "omit" }).then(function (r) {
      if (!r.ok) throw new Error("health check returned " + r.status);
    });
  }

  function el(tag, attrs, parent) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  var ICON_CHAT =
    '<svg viewBox="0 0 24 24" width="26" height="26" aria-hidden="true"><path fill="currentColor" ' +
    'd="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 5v2h2V9H7zm4 0v2h2V9h-2zm4 0v2h2V9h-2z"/></svg>';
  var ICON_CLOSE =
    '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true"><path fill="currentColor" ' +
    'd="M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4L12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z"/></svg>';

  function mount() {
    var host = el("div", { id: "qa-widget" }, document.body);
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    el("link", { rel: "stylesheet", href: base + "/qa-static/widget.css" }, root);
    var wrap = el("div", { class: "qa-w" + (left ? " qa-w-left" : "") }, root);

    var panel = el("div", { class: "qa-w-panel", role: "dialog", "aria-label": title, hidden: "" }, wrap);
    var head = el("div", { class: "qa-w-head" }, panel);
    el("span", { class: "qa-w-title" }, head).textContent = title;
    var open = el("a", { class: "qa-w-open", href: base + "/", target: "_blank", rel: "noopener", title: "Open in a new tab" }, head);
    open.textContent = "↗";
    var close = el("button", { class: "qa-w-close", type: "button", "aria-label": "Close chat" }, head);
    close.innerHTML = ICON_CLOSE;
    var body = el("div", { class: "qa-w-body" }, panel);

    var button = el("button", { class: "qa-w-launcher", type: "button", "aria-label": "Open chat: " + title, "aria-expanded": "false" }, wrap);
    button.innerHTML = ICON_CHAT;

    var frame = null;
    function toggle(show) {
      if (show && !frame) {
        // Created on first open: a page that never opens the chat loads nothing more.
        frame = el("iframe", { class: "qa-w-frame", title: title, src: chatUrl(), allow: "clipboard-write" }, body);
      }
      if (show) panel.removeAttribute("hidden");
      else panel.setAttribute("hidden", "");
      button.setAttribute("aria-expanded", show ? "true" : "false");
      button.classList.toggle("qa-w-active", show);
    }
    button.addEventListener("click", function () { toggle(panel.hasAttribute("hidden")); });
    close.addEventListener("click", function () { toggle(false); button.focus(); });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && !panel.hasAttribute("hidden")) toggle(false);
    });
    window.qaWidget = { open: function () { toggle(true); }, close: function () { toggle(false); } };
  }

  function start() {
    check().then(mount, function (err) {
      console.warn(
        "qa widget: not shown, this page (" + window.location.origin + ") may not embed " + base +
        ". Add it to the app's allowed_origins (QA_ALLOWED_ORIGINS). " + err
      );
    });
  }
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
