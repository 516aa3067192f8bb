// Tollgate's one script: while a change is live, its execution progress refreshes every two seconds, and
// the whole page once the change finishes (to show the outcome, the timeline and the next steps).
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box || box.getAttribute("data-live") !== "true") { return; }
  var src = box.getAttribute("data-src");
  function refresh() {
    fetch(src, { credentials: "same-origin", headers: { "accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        box.innerHTML = html;
        if (box.querySelector("#job-outcome")) { window.location.reload(); return; }
        setTimeout(refresh, 2000);
      })
      .catch(function () { setTimeout(refresh, 5000); });
  }
  setTimeout(refresh, 2000);
  document.querySelectorAll("[data-back]").forEach(function (a) {
    a.addEventListener("click", function (e) { e.preventDefault(); history.back(); });
  });
})();
