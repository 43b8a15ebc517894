// Minimal status page until the full viewer UI lands: instance details and online state.
"use strict";
async function refresh() {
  try {
    const [config, status] = await Promise.all([
      fetch("/api/config").then((r) => r.json()),
      fetch("/api/status").then((r) => r.json()),
    ]);
    document.title = config.name;
    document.getElementById("name").textContent = config.name;
    document.getElementById("summary").textContent = config.summary;
    document.getElementById("page-content").innerHTML = config.extraPageContent; // sanitised by the server
    document.getElementById("state").textContent = status.online
      ? `Live now: ${status.streamTitle || config.name}` : "The stream is offline.";
  } catch (err) {
    document.getElementById("state").textContent = "Cannot reach the server.";
  }
}
refresh();
setInterval(refresh, 5000);
