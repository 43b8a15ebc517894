// Polls /api/status and hands every answer (or null when the server is unreachable) to a callback.
import { getJSON } from "./dom.js";

export const STATUS_INTERVAL_MS = 4000;

export function watchStatus(onStatus, intervalMs = STATUS_INTERVAL_MS) {
  let timer = null;
  async function poll() {
    clearTimeout(timer);
    let status = null;
    try {
      status = await getJSON("/api/status");
    } catch (err) {
      status = null;
    }
    onStatus(status);
    timer = setTimeout(poll, intervalMs);
  }
  poll();
  return { refresh: poll };
}
