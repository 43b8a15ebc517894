// The viewer page: player, instance details, live state and chat.
import { ChatPanel } from "./chat.js";
import { showConfig, showStatus } from "./details.js";
import { getJSON } from "./dom.js";
import { Player } from "./player.js";
import { watchStatus } from "./status.js";

const player = new Player(document.getElementById("player"));
new ChatPanel(document.getElementById("chat"));

let config = null;
async function loadConfig() {
  try {
    config = await getJSON("/api/config");
  } catch (err) {
    return;
  }
  showConfig(config);
  player.setName(config.name);
}

loadConfig();
let wasOnline = false;
watchStatus((status) => {
  const online = Boolean(status && status.online);
  if (online && !wasOnline) loadConfig(); // the operator may have changed details meanwhile
  wasOnline = online;
  showStatus(status, config);
  // Load the player once this stream's playlists exist (hlsReady), not at the first
  // instant of the publish, when /hls/stream.m3u8 is still missing or left from before.
  if (status) player.setOnline(online && status.hlsReady !== false);
});
