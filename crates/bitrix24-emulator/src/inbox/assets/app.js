// The inbox page: applies colours and sizes kept in data-* attributes (the CSP forbids
// inline styles), runs the card actions through the same-origin action endpoint, and
// reloads the list when the server reports a change.
"use strict";
(function () {
  var user = document.body.dataset.user;
  if (!user) return;
  var colorRe = /^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]{1,20})$/;
  function px(v, max) { var n = parseInt(v, 10); return n > 0 ? Math.min(n, max) + "px" : ""; }
  function style(root) {
    root.querySelectorAll("[data-color]").forEach(function (el) {
      var c = el.dataset.color; if (!colorRe.test(c)) return;
      if (el.classList.contains("block-delimiter")) el.style.borderTopColor = c; else el.style.color = c;
    });
    root.querySelectorAll("[data-size]").forEach(function (el) { el.style.fontSize = px(el.dataset.size, 32); });
    root.querySelectorAll("[data-width]").forEach(function (el) { el.style.width = px(el.dataset.width, 4000); });
    root.querySelectorAll("[data-height]").forEach(function (el) { el.style.height = px(el.dataset.height, 4000); });
    root.querySelectorAll("[data-stripe]").forEach(function (el) {
      var c = el.dataset.stripe; if (c === "transparent" || colorRe.test(c)) el.style.borderLeftColor = c;
    });
  }
  var toast = document.getElementById("toast");
  function say(text) { toast.textContent = text; toast.hidden = false; setTimeout(function () { toast.hidden = true; }, 4000); }
  function run(method, params) {
    return fetch("/inbox/api/" + encodeURIComponent(user) + "/" + method, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(params)
    }).then(function (r) { return r.json(); }).then(function (a) {
      if (a.error) { say(a.error + ": " + a.error_description); return; }
      var m = a.result && a.result.result_message;
      if (Array.isArray(m) && m.length) say(m.join(" "));
      refresh();
    }).catch(function (e) { say("request failed: " + e); });
  }
  var list = document.getElementById("list");
  function refresh() {
    return fetch("/inbox/" + encodeURIComponent(user) + "/list").then(function (r) { return r.text(); })
      .then(function (html) { list.innerHTML = html; style(list); document.body.dataset.refreshed = String(Date.now()); });
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-action]"); if (!b) return;
    if (b.dataset.action === "confirm") run("im.notify.confirm", { ID: b.dataset.id, NOTIFY_VALUE: b.dataset.value });
    if (b.dataset.action === "read") run("im.notify.read", { ID: b.dataset.id, ONLY_CURRENT: "Y" });
  });
  document.addEventListener("submit", function (ev) {
    var f = ev.target.closest("form[data-answer]"); if (!f) return;
    ev.preventDefault();
    run("im.notify.answer", { ID: f.dataset.answer, ANSWER_TEXT: f.elements.answer.value });
  });
  style(document);
  var live = document.getElementById("live");
  var es = new EventSource("/inbox/" + encodeURIComponent(user) + "/events");
  es.addEventListener("ready", function () { live.dataset.live = "on"; live.textContent = "live"; });
  es.addEventListener("changed", function () { refresh(); });
  es.onerror = function () { live.dataset.live = "off"; live.textContent = "offline"; };
})();
