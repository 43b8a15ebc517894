// Instance details from /api/config and live state from /api/status, on the main page.
import { h } from "./dom.js";
import { platformIcon, platformInfo } from "./icons.js";

const $ = (id) => document.getElementById(id);

export function showConfig(config) {
  document.title = config.name || "Owncast";
  $("instance-name").textContent = config.name || "";
  $("details-name").textContent = config.name || "";
  // Both rendered from the operator's Markdown and sanitised by the server; the CSP blocks script anyway.
  $("summary").innerHTML = config.summaryHtml || "";
  $("tags").replaceChildren(...(config.tags || []).map((tag) => h("li", { class: "tag", text: `#${tag}` })));
  $("social").replaceChildren(...(config.socialHandles || []).map(socialLink).filter(Boolean));
  $("page-content").innerHTML = config.extraPageContent || "";
}

export function showStatus(status, config) {
  const online = Boolean(status && status.online);
  document.body.dataset.online = online ? "yes" : "no";
  $("live-badge").hidden = !online;
  const viewers = $("viewer-count");
  viewers.hidden = !online;
  if (online) {
    const n = Number(status.viewerCount) || 0;
    viewers.textContent = `${n} ${n === 1 ? "viewer" : "viewers"}`;
  }
  const title = (status && status.streamTitle) || (config && config.streamTitle) || "";
  $("stream-title").textContent = online ? title : "";
  $("stream-title").hidden = !online || !title;
  $("server-state").hidden = status !== null;
}

function socialLink(handle) {
  let url;
  try {
    url = new URL(handle.url);
  } catch (_) {
    return null;
  }
  if (!["http:", "https:", "mailto:"].includes(url.protocol)) return null; // no javascript: links
  const label = platformInfo(handle.platform).label;
  return h("li", {},
    h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer me", title: label, "aria-label": label,
      class: "social-link" }, platformIcon(handle.platform)));
}
