// /embed/chat (and the 0.0.7 paths /embed/chat/readwrite and /embed/chat/readonly): chat alone.
import { ChatPanel } from "./chat.js";

new ChatPanel(document.getElementById("chat"), { readonly: location.pathname.endsWith("/readonly") });
