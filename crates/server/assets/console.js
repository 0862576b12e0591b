// Progressive enhancement only: every form works without this file.
// 1. Buttons with data-confirm ask first. 2. A live part of a page (#live[data-refresh]) is
// fetched again every few seconds and swapped in, so a running job's state moves on its own.
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

(function refreshLive() {
  const live = document.getElementById("live");
  const every = live && Number(live.getAttribute("data-refresh"));
  if (!every) return;
  setInterval(async () => {
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      if (fresh) live.innerHTML = fresh.innerHTML;
    } catch (_) {
      // The next tick tries again.
    }
  }, every);
})();
