// The video player: an offline panel while no stream is live, hls.js playing /hls/stream.m3u8
// while one is, with automatic rendition switching and a manual quality menu.
//
// The status poll is the player's only clock: `setOnline()` is called on every poll, attaches
// the stream when the server is online and nothing is attached, and detaches it when the server
// goes offline. A fatal hls.js error or the end of the stream detaches too, so the next poll
// retries by itself (the playlist may not be written yet in the first seconds of a stream).
//
// Low-Latency HLS (issue 15): hls.js runs with `lowLatencyMode`, which takes effect only when
// the playlists say so (EXT-X-PART-INF, CAN-BLOCK-RELOAD): parts, blocking reload and delta
// updates then; plain MPEG-TS playlists play as before. `?debug=1` in the page's address shows
// the live latency (hls.js's estimate behind the live edge, and now minus the playing frame's
// EXT-X-PROGRAM-DATE-TIME) in an overlay.
import { h } from "./dom.js";

const STREAM_URL = "/hls/stream.m3u8";
const WORKER_URL = "/static/vendor/hls.js/hls.worker.js";
const PING_INTERVAL_MS = 5000; // viewer counting (D18)
// Keeping a low-latency stream at its target latency (PART-HOLD-BACK): hls.js speeds playback
// up only with more than 1 s buffered, which a viewer at a 1 s target never has, so the latency
// the start gave (loading the keyframe's parts) stayed for the session. Here the buffer decides,
// not hls.js's latency estimate (a sawtooth of a part or more with each playlist update, so a
// catch-up judged by it ended up to a part too close to the edge, and stalled): at the target
// the buffer just before a part arrives is the target minus a part. While the smallest
// buffer of the last LATENCY_WINDOW checks is CATCH_UP_FROM s above that, play at
// CATCH_UP_RATE; back to 1 once it is within CATCH_UP_UNTIL s of it (measured: docs/LLHLS.md).
const CATCH_UP_RATE = 1.1;
const CATCH_UP_FROM = 0.15;
const CATCH_UP_UNTIL = 0.02;
const LATENCY_CHECK_MS = 250;
const LATENCY_WINDOW = 8;
const DEBUG = new URLSearchParams(window.location.search).get("debug") === "1";

export class Player {
  constructor(root, { name = "This stream" } = {}) {
    this.root = root;
    this.online = false;
    this.hls = null;
    this.attached = false;
    this.pingTimer = null;
    this.latencyTimer = null;

    this.message = h("p", { class: "offline-message", id: "offline-message" });
    this.offline = h("div", { class: "offline", id: "offline" },
      h("img", { class: "offline-logo", src: "/logo", alt: "" }),
      this.message,
      h("p", { class: "offline-hint", text: "The video starts here by itself when the stream begins." }));
    this.video = h("video", { id: "video", controls: true, playsinline: true, preload: "none" });
    this.loading = h("p", { class: "player-loading", text: "Loading the stream…", "aria-hidden": "true" });
    this.quality = h("select", { id: "quality", class: "quality", "aria-label": "Video quality",
      on: { change: () => this.chooseLevel(Number(this.quality.value)) } });
    this.bar = h("div", { class: "player-bar", hidden: true }, h("label", { for: "quality", text: "Quality" }), this.quality);
    this.stage = h("div", { class: "stage" }, this.video, this.loading);
    if (DEBUG) {
      this.overlay = h("pre", { class: "latency-overlay", id: "latency-overlay", "aria-hidden": "true" });
      this.stage.append(this.overlay);
      setInterval(() => this.showLatency(), 500);
    }
    root.append(this.offline, this.stage, this.bar);

    this.video.addEventListener("playing", () => this.show("playing"));
    this.video.addEventListener("ended", () => this.detach("The stream has ended."));
    this.setName(name);
    this.show("offline");
  }

  setName(name) {
    this.name = name;
    if (!this.attached) this.message.textContent = `${name} is offline right now.`;
  }

  /** Called with each status poll; true when the server says a stream is live. */
  setOnline(online) {
    this.online = online;
    if (online && !this.attached) this.attach();
    else if (!online && this.attached) this.detach();
  }

  show(state) {
    this.root.dataset.state = state; // offline | loading | playing (the stylesheet shows each part)
  }

  attach() {
    this.attached = true;
    this.show("loading");
    this.startPing();
    const Hls = window.Hls;
    if (Hls && Hls.isSupported()) {
      // maxLiveSyncPlaybackRate: play up to 10 % faster while behind the target latency (a
      // start on a keyframe, a stall), so a viewer returns to the live edge by itself;
      // liveSyncOnStallIncrease: a stall raises the target latency by 0.25 s, not hls.js's 1 s
      // (measured: one stall at start-up otherwise costs a whole second for the session).
      // maxLiveSyncPlaybackRate 1: hls.js's own catch-up stays off (see keepLatency).
      const hls = new Hls({ workerPath: WORKER_URL, enableWorker: true, lowLatencyMode: true,
        maxLiveSyncPlaybackRate: 1, liveSyncOnStallIncrease: 0.25 });
      this.hls = hls;
      this.latencyTimer = setInterval(() => this.keepLatency(), LATENCY_CHECK_MS);
      hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
        this.fillQualityMenu(data.levels);
        this.play();
      });
      hls.on(Hls.Events.LEVEL_SWITCHED, () => this.labelAuto());
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !this.recovered) {
          this.recovered = true; // one recovery attempt, as the hls.js docs suggest
          hls.recoverMediaError();
        } else {
          this.detach(); // the next status poll tries again
        }
      });
      hls.loadSource(STREAM_URL);
      hls.attachMedia(this.video);
    } else if (this.video.canPlayType("application/vnd.apple.mpegurl")) {
      this.video.src = STREAM_URL; // Safari plays HLS natively
      this.play();
    } else {
      this.detach("This browser cannot play the stream.");
    }
  }

  detach(message) {
    this.attached = false;
    this.recovered = false;
    this.stopPing();
    clearInterval(this.latencyTimer);
    this.latencyTimer = null;
    this.recentBuffer = null;
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    this.video.removeAttribute("src");
    this.video.load();
    this.quality.replaceChildren();
    this.bar.hidden = true;
    this.message.textContent = message || `${this.name} is offline right now.`;
    this.show("offline");
    if (!message && this.online) this.show("loading"); // an error while live: retry on next poll
  }

  async play() {
    try {
      await this.video.play();
    } catch (err) {
      if (err.name !== "NotAllowedError") return;
      // Browsers refuse sound without a user gesture; start muted, the controls can unmute.
      this.video.muted = true;
      try { await this.video.play(); } catch (_) { /* the user can press play */ }
    }
  }

  fillQualityMenu(levels) {
    const options = [h("option", { value: "-1", text: "Auto" })];
    levels
      .map((level, index) => ({ level, index }))
      .sort((a, b) => (b.level.height - a.level.height) || (b.level.bitrate - a.level.bitrate))
      .forEach(({ level, index }) => options.push(h("option", { value: String(index), text: levelName(level) })));
    this.quality.replaceChildren(...options);
    this.quality.value = "-1";
    this.bar.hidden = false;
  }

  chooseLevel(index) {
    if (!this.hls) return;
    this.hls.currentLevel = index; // -1: automatic switching by measured bandwidth
    this.labelAuto();
  }

  labelAuto() {
    const auto = this.quality.querySelector('option[value="-1"]');
    if (!auto || !this.hls) return;
    const level = this.hls.levels[this.hls.currentLevel];
    auto.textContent = this.hls.autoLevelEnabled && level ? `Auto (${levelName(level)})` : "Auto";
  }

  /** Low latency only (playlists with parts): play a little faster while behind the target. */
  keepLatency() {
    const hls = this.hls;
    const details = hls && hls.latestLevelDetails;
    if (!details || !details.live || !details.partList || this.video.paused) return;
    const recent = this.recentBuffer || (this.recentBuffer = []);
    recent.push(bufferAhead(this.video));
    if (recent.length > LATENCY_WINDOW) recent.shift();
    // hls.js's target: PART-HOLD-BACK, raised a little after each stall (liveSyncOnStallIncrease),
    // so a viewer whose parts arrive unevenly keeps more in hand.
    const target = hls.targetLatency || details.partHoldBack || 3 * details.partTarget;
    const spare = Math.min(...recent) - (target - details.partTarget);
    const fast = this.video.playbackRate > 1;
    const want = recent.length === LATENCY_WINDOW && spare > (fast ? CATCH_UP_UNTIL : CATCH_UP_FROM);
    const rate = want ? CATCH_UP_RATE : 1;
    if (this.video.playbackRate !== rate) this.video.playbackRate = rate;
  }

  showLatency() {
    const hls = this.hls;
    if (!hls || !this.overlay) return;
    const level = hls.levels && hls.levels[hls.currentLevel];
    const details = level && level.details;
    const edge = hls.latency; // seconds behind the live edge, hls.js's estimate
    const date = hls.playingDate; // from EXT-X-PROGRAM-DATE-TIME of the frame on screen
    const wall = date ? (Date.now() - date.getTime()) / 1000 : NaN;
    this.overlay.dataset.latency = Number.isFinite(edge) ? edge.toFixed(3) : "";
    this.overlay.dataset.wallLatency = Number.isFinite(wall) ? wall.toFixed(3) : "";
    this.overlay.textContent = [
      `latency ${Number.isFinite(edge) ? edge.toFixed(2) : "?"} s (target ${(hls.targetLatency || 0).toFixed(2)} s)`,
      `since capture ${Number.isFinite(wall) ? wall.toFixed(2) : "?"} s`,
      `low latency ${details && details.partList ? "on" : "off"}, level ${level ? levelName(level) : "?"}`,
      `buffer ${bufferAhead(this.video).toFixed(2)} s, rate ${this.video.playbackRate.toFixed(2)}`,
    ].join("\n");
  }

  startPing() {
    this.stopPing();
    const ping = () => fetch("/api/ping", { cache: "no-store" }).catch(() => {});
    ping();
    this.pingTimer = setInterval(ping, PING_INTERVAL_MS);
  }

  stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}

function bufferAhead(video) {
  const t = video.currentTime;
  for (let i = 0; i < video.buffered.length; i++) {
    if (video.buffered.start(i) <= t && t <= video.buffered.end(i)) return video.buffered.end(i) - t;
  }
  return 0;
}

function levelName(level) {
  if (level.height) return `${level.height}p`;
  return `${Math.round((level.bitrate || 0) / 1000)} kbps`;
}
