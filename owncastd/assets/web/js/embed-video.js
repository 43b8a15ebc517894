// /embed/video: the player alone, for other sites' iframes.
import { getJSON } from "./dom.js";
import { Player } from "./player.js";
import { watchStatus } from "./status.js";

const player = new Player(document.getElementById("player"));
getJSON("/api/config").then((config) => player.setName(config.name)).catch(() => {});
watchStatus((status) => {
  if (status) player.setOnline(Boolean(status.online) && status.hlsReady !== false);
});
