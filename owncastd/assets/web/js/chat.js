// The chat panel: history, live messages over the /entry websocket, display name, emoji picker,
// server errors, reconnection with backoff. Message bodies are HTML sanitised by the server;
// every other field (names, errors) is inserted as text.
import { getJSON, h, svg } from "./dom.js";

const NAME_KEY = "owncast.username";
const MAX_MESSAGE_LENGTH = 500;
const MAX_NAME_LENGTH = 30;
const MAX_SHOWN = 300;               // older messages are dropped from the page
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const ERROR_SHOWN_MS = 8000;
const CLOSE_POLICY = 1008;           // banned, or chat switched off: retry only slowly
const STORED_TYPES = new Set(["CHAT", "SYSTEM", "CHAT_ACTION"]);

/** A websocket to /entry that reconnects with exponential backoff (and jitter) after a drop. */
export class ChatSocket {
  constructor({ onOpen, onMessage, onState }) {
    this.handlers = { onOpen, onMessage, onState };
    this.delay = BACKOFF_MIN_MS;
    this.ws = null;
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/entry`);
    this.ws = ws;
    this.handlers.onState("connecting");
    ws.addEventListener("open", () => {
      this.delay = BACKOFF_MIN_MS;
      this.handlers.onState("connected");
      this.handlers.onOpen();
    });
    ws.addEventListener("message", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (!data || typeof data !== "object") return;
      if (data.type === "PING") this.send({ type: "PONG" });
      else this.handlers.onMessage(data);
    });
    // "error" is always followed by "close"; reconnect from there only.
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      // A refusal (ban, chat off) is answered by "open" then a 1008 close: do not let that
      // reset the backoff into a reconnect every second.
      if (event.code === CLOSE_POLICY) this.delay = BACKOFF_MAX_MS;
      const wait = this.delay * (0.75 + Math.random() / 2);
      this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
      this.handlers.onState("reconnecting", wait);
      setTimeout(() => this.connect(), wait);
    });
  }

  get isOpen() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }
}

export class ChatPanel {
  constructor(root, { readonly = false } = {}) {
    this.root = root;
    this.readonly = readonly;
    this.shown = new Map(); // message id -> its <li>
    this.emoji = null;
    this.savedName = readName();
    this.name = this.savedName || `viewer-${Math.floor(1000 + Math.random() * 9000)}`;
    this.build();
    this.socket = new ChatSocket({
      onOpen: () => this.connected(),
      onMessage: (m) => this.receive(m),
      onState: (state, wait) => this.showState(state, wait),
    });
  }

  build() {
    this.state = h("span", { class: "chat-state", "aria-live": "polite" });
    this.list = h("ol", { class: "chat-messages", id: "chat-messages", "aria-label": "Chat messages",
      "aria-live": "polite", tabindex: "0" });
    this.error = h("p", { class: "chat-error", role: "alert", hidden: true });
    this.root.classList.add("chat");
    this.root.append(
      h("div", { class: "chat-head" }, h("h2", { text: "Chat" }), this.state),
      this.list, this.error);
    if (!this.readonly) this.root.append(this.buildForm());
  }

  buildForm() {
    this.nameLabel = h("strong", { class: "chat-name", id: "chat-name", text: this.name });
    this.nameInput = h("input", { id: "chat-name-input", type: "text", maxlength: MAX_NAME_LENGTH,
      autocomplete: "nickname", "aria-label": "Your display name" });
    this.nameForm = h("form", { class: "name-form", hidden: true, on: { submit: (e) => { e.preventDefault(); this.saveName(); } } },
      this.nameInput,
      h("button", { type: "submit", text: "Save" }),
      h("button", { type: "button", class: "secondary", text: "Cancel", on: { click: () => this.toggleNameForm(false) } }));
    this.nameRow = h("div", { class: "name-row" },
      h("span", { text: "Chatting as " }), this.nameLabel,
      h("button", { type: "button", class: "link", id: "chat-name-change", text: "Change",
        on: { click: () => this.toggleNameForm(true) } }));

    this.input = h("input", { id: "chat-input", class: "chat-input", type: "text", maxlength: MAX_MESSAGE_LENGTH,
      autocomplete: "off", placeholder: "Send a message…", "aria-label": "Chat message" });
    this.emojiButton = h("button", { type: "button", class: "icon-button", id: "emoji-toggle",
      "aria-label": "Emoji", "aria-expanded": "false", "aria-controls": "emoji-picker",
      on: { click: () => this.toggleEmoji() } }, smileyIcon());
    this.sendButton = h("button", { type: "submit", id: "chat-send", class: "send", text: "Send" });
    this.picker = h("div", { class: "emoji-picker", id: "emoji-picker", hidden: true, role: "group", "aria-label": "Emoji" });
    this.picker.addEventListener("keydown", (e) => { if (e.key === "Escape") this.toggleEmoji(false); });

    const form = h("form", { class: "chat-form", id: "chat-form",
      on: { submit: (e) => { e.preventDefault(); this.sendChat(); } } },
      h("div", { class: "compose" }, this.emojiButton, this.input, this.sendButton));
    return h("div", { class: "chat-foot" }, this.picker, form, this.nameRow, this.nameForm);
  }

  // --- connection -------------------------------------------------------------------------

  connected() {
    if (this.savedName) this.socket.send({ type: "USER_JOINED", username: this.savedName });
    this.loadHistory();
  }

  showState(state, wait) {
    const text = { connecting: "connecting…", connected: "", reconnecting: `reconnecting in ${Math.ceil(wait / 1000)} s…` }[state];
    this.state.textContent = text;
    this.root.dataset.connection = state;
  }

  /** History on every (re)connect: fills what a drop missed, removes what was hidden meanwhile. */
  async loadHistory() {
    let history;
    try {
      history = await getJSON("/api/chat");
    } catch (err) {
      return;
    }
    if (!Array.isArray(history)) return;
    const ids = new Set(history.map((m) => m.id));
    const oldest = history.length ? when(history[0].timestamp) : Infinity;
    for (const [id, li] of this.shown) {
      if (!ids.has(id) && li.dataset.type === "CHAT" && Number(li.dataset.when) >= oldest) this.remove(id);
    }
    history.forEach((m) => this.add(m));
    this.scrollToEnd(true);
  }

  receive(m) {
    switch (m.type) {
      case "CHAT":
      case "SYSTEM":
      case "CHAT_ACTION":
        this.add(m);
        break;
      case "VISIBILITY-UPDATE":
        if (m.visible === false) this.remove(m.id);
        else this.add({ ...m, type: m.messageType || "CHAT" });
        break;
      case "NAME_CHANGE":
        this.notice(m, `${m.oldName} is now known as ${m.newName}`);
        break;
      case "USER_JOINED":
        this.notice(m, `${m.username} joined the chat`);
        break;
      case "ERROR":
        this.showError(m.message || "The chat server refused that.");
        break;
      default:
        break; // unknown types are ignored, as the server ignores ours
    }
  }

  // --- messages ---------------------------------------------------------------------------

  add(m) {
    if (!m.id || this.shown.has(m.id) || m.visible === false || !STORED_TYPES.has(m.type)) return;
    const li = h("li", { class: `message message-${m.type.toLowerCase().replace("_", "-")}` });
    li.dataset.id = m.id;
    li.dataset.type = m.type;
    li.dataset.when = when(m.timestamp);
    if (m.type !== "CHAT_ACTION" && m.author) {
      li.append(h("span", { class: "author", text: m.author }));
    }
    const body = h("div", { class: "body" });
    body.innerHTML = m.body || ""; // sanitised by the server; the CSP blocks script regardless
    li.append(body);
    if (m.timestamp) li.title = new Date(m.timestamp).toLocaleTimeString();
    this.insert(li);
    this.shown.set(m.id, li);
  }

  notice(m, text) {
    if (m.id && this.shown.has(m.id)) return;
    const li = h("li", { class: "message message-notice", text });
    li.dataset.id = m.id || "";
    li.dataset.when = when(m.timestamp);
    this.insert(li);
    if (m.id) this.shown.set(m.id, li);
  }

  insert(li) {
    const stick = this.nearEnd();
    // Messages arrive in order; history merged after a reconnect may not: keep timestamp order.
    let next = null;
    for (let el = this.list.lastElementChild; el && Number(el.dataset.when) > Number(li.dataset.when); el = el.previousElementSibling) {
      next = el;
    }
    this.list.insertBefore(li, next);
    while (this.list.children.length > MAX_SHOWN) {
      const first = this.list.firstElementChild;
      this.shown.delete(first.dataset.id);
      first.remove();
    }
    this.scrollToEnd(stick);
  }

  remove(id) {
    const li = this.shown.get(id);
    if (!li) return;
    li.remove();
    this.shown.delete(id);
  }

  nearEnd() {
    const l = this.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 60;
  }

  scrollToEnd(stick) {
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = false;
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => { this.error.hidden = true; }, ERROR_SHOWN_MS);
  }

  // --- sending ----------------------------------------------------------------------------

  sendChat() {
    const body = this.input.value.trim();
    if (!body) return;
    if (!this.socket.send({ type: "CHAT", author: this.name, body })) {
      this.showError("Not connected to the chat; your message was not sent.");
      return;
    }
    this.remember(this.name);
    this.input.value = "";
    this.toggleEmoji(false);
    this.input.focus();
  }

  toggleNameForm(open) {
    this.nameForm.hidden = !open;
    this.nameRow.hidden = open;
    if (open) {
      this.nameInput.value = this.name;
      this.nameInput.focus();
      this.nameInput.select();
    } else {
      this.input.focus();
    }
  }

  saveName() {
    const newName = this.nameInput.value.trim().slice(0, MAX_NAME_LENGTH);
    if (newName && newName !== this.name) {
      this.socket.send({ type: "NAME_CHANGE", oldName: this.name, newName });
      this.name = newName;
      this.nameLabel.textContent = newName;
      this.remember(newName);
    }
    this.toggleNameForm(false);
  }

  remember(name) {
    this.savedName = name;
    try { localStorage.setItem(NAME_KEY, name); } catch (_) { /* private mode: name lasts this visit */ }
  }

  // --- emoji ------------------------------------------------------------------------------

  async toggleEmoji(open = this.picker.hidden) {
    if (!this.picker) return;
    this.picker.hidden = !open;
    this.emojiButton.setAttribute("aria-expanded", String(open));
    if (!open) return;
    if (this.emoji === null) {
      try {
        this.emoji = await getJSON("/api/emoji");
      } catch (err) {
        this.emoji = null;
        this.picker.replaceChildren(h("p", { text: "Emoji are not available." }));
        return;
      }
      const buttons = (Array.isArray(this.emoji) ? this.emoji : []).map((e) =>
        h("button", { type: "button", class: "emoji", title: `:${e.name}:`, "aria-label": e.name,
          on: { click: () => this.insertEmoji(e.name) } },
          h("img", { src: e.emoji, alt: "", width: 24, height: 24, loading: "lazy" })));
      this.picker.replaceChildren(...(buttons.length ? buttons : [h("p", { text: "No emoji yet." })]));
    }
    const first = this.picker.querySelector("button");
    if (first) first.focus();
  }

  insertEmoji(name) {
    // The server turns :name: into the emoji image.
    const code = `:${name}: `;
    const { selectionStart: start, selectionEnd: end, value } = this.input;
    const at = start ?? value.length;
    this.input.value = (value.slice(0, at) + code + value.slice(end ?? at)).slice(0, MAX_MESSAGE_LENGTH);
    this.input.focus();
    this.input.setSelectionRange(at + code.length, at + code.length);
  }
}

/** Milliseconds since the epoch of an RFC 3339 timestamp (now if missing), for ordering. */
function when(timestamp) {
  return Date.parse(timestamp) || Date.now();
}

function readName() {
  try {
    const name = localStorage.getItem(NAME_KEY);
    return name && name.trim() ? name.trim().slice(0, MAX_NAME_LENGTH) : null;
  } catch (_) {
    return null;
  }
}

function smileyIcon() {
  return svg("svg", { viewBox: "0 0 24 24", width: 20, height: 20, "aria-hidden": "true", class: "icon" },
    svg("circle", { cx: 12, cy: 12, r: 10, fill: "none", stroke: "currentColor", "stroke-width": 2 }),
    svg("circle", { cx: 8.5, cy: 10, r: 1.5, fill: "currentColor" }),
    svg("circle", { cx: 15.5, cy: 10, r: 1.5, fill: "currentColor" }),
    svg("path", { d: "M7.5 14.5c1.2 1.8 2.7 2.7 4.5 2.7s3.3-.9 4.5-2.7", fill: "none", stroke: "currentColor",
      "stroke-width": 2, "stroke-linecap": "round" }));
}
