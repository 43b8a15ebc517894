// /replays/<id>: a recording played from its VOD playlist /replay/<id> with hls.js (seekable:
// the playlist is complete), or natively where the browser plays HLS itself.
const WORKER_URL = "/static/vendor/hls.js/hls.worker.js";
const id = decodeURIComponent(location.pathname.split("/").pop());
const manifest = `/replay/${encodeURIComponent(id)}`;
const video = document.getElementById("video");
document.getElementById("replay-download").href =
  `/api/replays/${encodeURIComponent(id)}/download`;

function play() {
  const Hls = window.Hls;
  if (Hls && Hls.isSupported()) {
    const hls = new Hls({ workerPath: WORKER_URL, enableWorker: true });
    hls.loadSource(manifest);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = manifest;
  }
}

fetch("/api/replays", { credentials: "same-origin" })
  .then((r) => (r.ok ? r.json() : []))
  .then((replays) => {
    const replay = replays.find((r) => r.id === id);
    if (!replay) return;
    document.title = replay.title;
    document.getElementById("replay-title").textContent = replay.title;
    const minutes = Math.round(replay.durationSeconds / 60);
    document.getElementById("replay-details").textContent =
      `${new Date(replay.startTime).toLocaleString()} · ${minutes} min`;
    if (replay.thumbnail) video.poster = replay.thumbnail;
  })
  .catch(() => {});
window.addEventListener("load", play);
