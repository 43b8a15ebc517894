// Social platform icons, drawn here (no icon font, no CDN): a badge in the platform's colour
// with a simple glyph or its initial. Unknown platforms get a link glyph.
import { svg } from "./dom.js";

// Null-prototype tables: a platform named "constructor" or "__proto__" is just unknown.
const PLATFORMS = Object.assign(Object.create(null), {
  bluesky: { color: "#1185fe", label: "Bluesky", glyph: "butterfly" },
  discord: { color: "#5865f2", label: "Discord", letter: "D" },
  email: { color: "#6b7280", label: "Email", glyph: "mail" },
  facebook: { color: "#1877f2", label: "Facebook", letter: "f" },
  github: { color: "#24292f", label: "GitHub", letter: "G" },
  instagram: { color: "#d6249f", label: "Instagram", glyph: "camera" },
  kofi: { color: "#ff5e5b", label: "Ko-fi", glyph: "cup" },
  linkedin: { color: "#0a66c2", label: "LinkedIn", letter: "in" },
  mastodon: { color: "#6364ff", label: "Mastodon", letter: "M" },
  patreon: { color: "#f96854", label: "Patreon", letter: "P" },
  paypal: { color: "#003087", label: "PayPal", letter: "P" },
  reddit: { color: "#ff4500", label: "Reddit", letter: "r" },
  snapchat: { color: "#d4c800", label: "Snapchat", letter: "S" },
  spotify: { color: "#1db954", label: "Spotify", glyph: "waves" },
  tiktok: { color: "#111111", label: "TikTok", glyph: "note" },
  twitch: { color: "#9146ff", label: "Twitch", letter: "T" },
  twitter: { color: "#1d9bf0", label: "Twitter", letter: "X" },
  x: { color: "#111111", label: "X", letter: "X" },
  youtube: { color: "#ff0000", label: "YouTube", glyph: "play" },
});

const GLYPHS = Object.assign(Object.create(null), {
  play: () => svg("path", { d: "M10 8.5v7l6-3.5z", fill: "#fff" }),
  mail: () => svg("path", { d: "M6.5 8.5h11v7h-11zM6.5 8.5l5.5 4 5.5-4", fill: "none", stroke: "#fff", "stroke-width": 1.5, "stroke-linejoin": "round" }),
  camera: () => svg("g", { fill: "none", stroke: "#fff", "stroke-width": 1.6 },
    svg("rect", { x: 7, y: 7, width: 10, height: 10, rx: 3 }), svg("circle", { cx: 12, cy: 12, r: 2.4 })),
  cup: () => svg("path", { d: "M7 9h8v4a3 3 0 0 1-3 3h-2a3 3 0 0 1-3-3zM15 10h1.5a1.5 1.5 0 0 1 0 3H15", fill: "none", stroke: "#fff", "stroke-width": 1.6 }),
  note: () => svg("path", { d: "M13 6.5v7.5a2.5 2.5 0 1 1-2-2.45M13 6.5c.5 1.8 1.8 2.8 3.5 3", fill: "none", stroke: "#fff", "stroke-width": 1.8, "stroke-linecap": "round" }),
  waves: () => svg("path", { d: "M7.5 10c3-1 6-1 9 .5M8 12.5c2.5-.7 5-.6 7.5.6M8.5 15c2-.5 4-.4 6 .4", fill: "none", stroke: "#fff", "stroke-width": 1.6, "stroke-linecap": "round" }),
  butterfly: () => svg("path", { d: "M12 11.5C10.5 8.5 8 7 6.5 7.5c-1 .4-.5 3 .5 4.5 1 1.3 2.5 1.5 3.5 1.3-1.5.6-2 2.3-.5 3 1.3.6 2-1 2-2.5 0 1.5.7 3.1 2 2.5 1.5-.7 1-2.4-.5-3 1 .2 2.5 0 3.5-1.3 1-1.5 1.5-4.1.5-4.5C16 7 13.5 8.5 12 11.5z", fill: "#fff" }),
  link: () => svg("path", { d: "M10.5 13.5l3-3M9.5 11l-1.5 1.5a2.5 2.5 0 0 0 3.5 3.5l1.5-1.5M14.5 13l1.5-1.5a2.5 2.5 0 0 0-3.5-3.5L11 9.5", fill: "none", stroke: "#fff", "stroke-width": 1.6, "stroke-linecap": "round" }),
});

export function platformInfo(platform) {
  const key = String(platform || "").toLowerCase().replace(/[^a-z]/g, "");
  return Object.hasOwn(PLATFORMS, key) ? PLATFORMS[key]
    : { color: "#4b5563", label: String(platform || "Link"), glyph: "link" };
}

/** An <svg> badge for a platform name (as operators enter it, any case). */
export function platformIcon(platform) {
  const info = platformInfo(platform);
  const mark = info.letter
    ? svg("text", { x: 12, y: 16.2, "text-anchor": "middle", fill: "#fff", "font-size": info.letter.length > 1 ? 9 : 12,
      "font-weight": 700, "font-family": "system-ui, sans-serif", text: info.letter })
    : (Object.hasOwn(GLYPHS, info.glyph) ? GLYPHS[info.glyph] : GLYPHS.link)();
  return svg("svg", { viewBox: "0 0 24 24", width: 32, height: 32, class: "social-icon", "aria-hidden": "true" },
    svg("rect", { width: 24, height: 24, rx: 6, fill: info.color }), mark);
}
