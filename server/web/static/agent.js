// Parley agent console: sign in, presence, the live queue and own conversations, a thread with
// the handoff summary, claim / reply / suggested drafts / resolve / hand back.
import { api, citations, clear, el, fmtTime, link, richText, safeHref, uuid } from "/static/safe.js";

const $ = (id) => document.getElementById(id);
const SESSION = "parley:agent";

const st = {
  token: null,
  agentId: null,
  me: null,
  ws: null,
  connected: false,
  wantOnline: true,
  attempt: 0,
  timer: null,
  convs: new Map(), // id -> conversation json
  threads: new Map(), // id -> {messages: Map, lastSeq, drafts: Map, loaded}
  selected: null,
  agentsOnline: new Map(),
  userPresence: new Map(),
  readBy: new Map(), // cid -> seq read by the visitor
  typingSentAt: 0,
  typingTimer: null,
  refs: 0,
  replyTo: null, // the message the next reply quotes
  editing: null, // the agent's own message being edited
  emojis: ["👍", "❤️", "😂", "🎉", "🙏"],
  editWindowMs: 15 * 60 * 1000,
};

function toast(text) {
  const t = $("toast");
  t.textContent = String(text);
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

function call(method, path, body) {
  return api(st.token, method, path, body).catch((e) => {
    if (e.status === 401) logout("Your session expired; sign in again.");
    throw e;
  });
}

// ---- login -------------------------------------------------------------------------------
function showLogin(msg) {
  $("login").hidden = false;
  $("workspace").hidden = true;
  $("me").hidden = true;
  $("login-error").textContent = msg || "";
}

function logout(msg) {
  sessionStorage.removeItem(SESSION);
  st.token = null;
  st.wantOnline = false;
  if (st.ws) st.ws.close();
  showLogin(msg);
}

function credentials() {
  return { email: $("email").value, password: $("password").value };
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  const body = credentials();
  if (!$("otp-row").hidden && $("otp").value.trim()) body.otp = $("otp").value.trim();
  try {
    const r = await api(null, "POST", "/v1/auth/login", body);
    sessionStorage.setItem(SESSION, JSON.stringify({ token: r.token, agentId: r.agent_id }));
    $("otp").value = "";
    start(r.token, r.agent_id);
  } catch (err) {
    if (err.field === "otp") {
      // two-factor sign-in is on for this account: ask for the code
      $("otp-row").hidden = false;
      $("otp").value = "";
      $("otp").focus();
    }
    if (err.field === "mfa_enrollment") startEnrolment();
    $("login-error").textContent = err.message || "Sign in failed";
  }
});

// ---- two-factor sign-in: enrol an authenticator with the password and a first code ---------
async function startEnrolment() {
  try {
    const r = await api(null, "POST", "/v1/auth/mfa/enroll", credentials());
    $("mfa-secret").textContent = r.secret;
    $("mfa-uri").href = r.otpauth_uri;
    $("mfa-codes").hidden = true;
    $("mfa-enrol").hidden = false;
    $("mfa-code").focus();
  } catch (err) {
    $("login-error").textContent = err.message || "Could not start two-factor sign-in";
  }
}
$("mfa-setup").addEventListener("click", () => {
  $("login-error").textContent = "";
  if (!$("email").value || !$("password").value) {
    $("login-error").textContent = "Enter your email and password first.";
    return;
  }
  startEnrolment();
});
$("mfa-confirm").addEventListener("click", async () => {
  try {
    const r = await api(null, "POST", "/v1/auth/mfa/confirm", Object.assign(credentials(), { otp: $("mfa-code").value.trim() }));
    const list = clear($("mfa-code-list"));
    for (const c of r.recovery_codes) list.appendChild(el("li", "", c));
    $("mfa-codes").hidden = false;
    $("otp-row").hidden = false;
    $("login-error").textContent = "";
    $("otp").focus();
  } catch (err) {
    $("login-error").textContent = err.message || "That code did not work";
  }
});
$("logout").addEventListener("click", () => logout());

function start(token, agentId) {
  st.token = token;
  st.agentId = agentId;
  st.wantOnline = true;
  $("login").hidden = true;
  $("workspace").hidden = false;
  $("me").hidden = false;
  $("presence").value = "online";
  connect();
  loadDesk();
}

// ---- socket ------------------------------------------------------------------------------
function send(frame) {
  if (st.ws && st.connected && st.ws.readyState === 1) {
    st.ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function setConn(text, cls) {
  const c = $("conn");
  c.textContent = text;
  c.className = "conn " + (cls || "");
}

function connect() {
  if (st.ws || !st.token || !st.wantOnline) return;
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/v1/ws");
  st.ws = ws;
  setConn("connecting…");
  let fatal = null;
  ws.onopen = () => {
    const resume = {};
    for (const [cid, t] of st.threads) if (t.loaded) resume[cid] = t.lastSeq;
    ws.send(JSON.stringify({ type: "hello", token: st.token, resume }));
  };
  ws.onmessage = (ev) => {
    let f;
    try {
      f = JSON.parse(ev.data);
    } catch (_e) {
      return;
    }
    if ((f.type === "error" && f.fatal) || f.type === "bye") fatal = fatal || f;
    onFrame(f);
  };
  ws.onclose = () => {
    if (st.ws !== ws) return;
    st.ws = null;
    st.connected = false;
    const code = fatal && fatal.code;
    if (code === "token_expired" || code === "token_invalid") {
      logout("Your session expired; sign in again.");
      return;
    }
    if (!st.wantOnline) {
      setConn("offline", "off");
      return;
    }
    setConn("reconnecting…", "warn");
    st.attempt += 1;
    const delay = Math.min(15000, 500 * 2 ** Math.min(st.attempt - 1, 5)) * (0.5 + Math.random() * 0.5);
    st.timer = setTimeout(() => {
      st.timer = null;
      connect();
    }, Math.max(delay, (fatal && fatal.retry_after_ms) || 0));
  };
}

function onFrame(f) {
  switch (f.type) {
    case "welcome":
      st.connected = true;
      st.attempt = 0;
      st.me = f.me;
      if (f.limits && Array.isArray(f.limits.reaction_emojis) && f.limits.reaction_emojis.length) {
        st.emojis = f.limits.reaction_emojis;
      }
      if (f.limits && typeof f.limits.edit_window_s === "number") st.editWindowMs = f.limits.edit_window_s * 1000;
      $("me-name").textContent = f.me.name || f.me.id;
      setConn("online", "ok");
      refreshLists();
      loadOps();
      loadSnoozed();
      break;
    case "conversation.updated":
      if (st.liveDuringRefresh && f.conversation) st.liveDuringRefresh.add(f.conversation.id);
      upsertConv(f.conversation);
      break;
    case "message":
      addMessage(f.conversation_id, f.message);
      break;
    case "message.delta":
      onDelta(f);
      break;
    case "message.edited":
      if (f.message) changed(f.conversation_id, f.message.seq, (old) => ({ ...f.message, reactions: old.reactions }));
      break;
    case "message.deleted":
      changed(f.conversation_id, f.seq, (old) => ({ ...old, deleted: true, deleted_at: f.deleted_at, text: "",
        attachments: undefined, rich: undefined }));
      break;
    case "message.reaction":
      onReaction(f);
      break;
    case "subscribed": {
      const t = st.threads.get(f.conversation_id);
      if (t) {
        t.loaded = true;
        if (f.last_seq > t.lastSeq) fillGap(f.conversation_id, t.lastSeq);
        refreshThread(f.conversation_id);
      }
      break;
    }
    case "typing":
      if (f.conversation_id === st.selected && f.participant && f.participant.id !== (st.me && st.me.id)) {
        const t = $("typing");
        t.textContent = (f.participant.name || "The visitor") + " is typing…";
        t.hidden = !f.active;
        clearTimeout(onFrame.typingTimer);
        if (f.active) onFrame.typingTimer = setTimeout(() => (t.hidden = true), 6000);
      }
      break;
    case "read":
      if (f.participant && f.participant.kind === "user") {
        st.readBy.set(f.conversation_id, Math.max(st.readBy.get(f.conversation_id) || 0, f.seq || 0));
        if (f.conversation_id === st.selected) renderRead();
      }
      break;
    case "presence":
      onPresence(f);
      break;
    case "note.mention":
      onMention(f);
      break;
    case "notification":
      if (f.notification) toast((f.notification.title || "") + " " + (f.notification.body || ""));
      break;
    case "error":
      if (!f.fatal) toast(f.detail || f.code);
      break;
    default:
      break;
  }
}

function onPresence(f) {
  const p = f.participant || {};
  if (p.kind === "agent") {
    if (f.status === "offline") st.agentsOnline.delete(p.id);
    else st.agentsOnline.set(p.id, p.name || p.id);
    renderAgents();
  } else if (p.kind === "user") {
    st.userPresence.set(p.id, f.status);
    renderHead();
  }
}

function renderAgents() {
  const ul = clear($("agents"));
  if (st.me) st.agentsOnline.set(st.me.id, st.me.name || st.me.id);
  for (const [, name] of st.agentsOnline) ul.appendChild(el("li", "", "● " + name));
}

$("presence").addEventListener("change", () => {
  if ($("presence").value === "offline") {
    st.wantOnline = false;
    clearTimeout(st.timer);
    st.timer = null;
    if (st.ws) st.ws.close(1000, "going offline");
    setConn("offline", "off");
  } else {
    st.wantOnline = true;
    connect();
  }
});

// ---- conversation lists ------------------------------------------------------------------
async function refreshLists() {
  // A conversation the socket updates while this request is in flight (an agent who comes online
  // is given a waiting conversation at once) is newer than the list's copy: keep the live one.
  const live = new Set();
  st.liveDuringRefresh = live;
  try {
    const r = await call("GET", "/v1/conversations?limit=200");
    for (const c of r.conversations || []) if (!live.has(c.id)) upsertConv(c, true);
    renderLists();
    renderHead();
  } catch (_e) { /* shown by call() when it matters */ } finally {
    if (st.liveDuringRefresh === live) st.liveDuringRefresh = null;
  }
}

function upsertConv(c, quiet) {
  const prev = st.convs.get(c.id) || {};
  const merged = Object.assign({}, prev, c);
  if (c.status !== "queued") {
    delete merged.queue_position;
    delete merged.eta_seconds;
  }
  st.convs.set(c.id, merged);
  if (!quiet) {
    renderLists();
    if (c.id === st.selected) renderHead();
  }
}

function isMine(c) {
  return c.status === "assigned" && st.me && c.assignee === st.me.id;
}

function convItem(c) {
  const li = el("li", "conv" + (c.id === st.selected ? " active" : ""));
  li.dataset.cid = c.id;
  li.dataset.testid = "conv";
  li.appendChild(el("div", "conv-name", "Visitor " + String(c.user_id || "").slice(-6)));
  const sub = el("div", "conv-meta");
  let text = c.status;
  if (c.status === "queued" && c.queue_position) text += " · #" + c.queue_position;
  if (c.handoff_reason) text += " · " + c.handoff_reason;
  sub.textContent = text;
  li.appendChild(sub);
  li.addEventListener("click", () => select(c.id));
  return li;
}

function renderLists() {
  const queued = [];
  const mine = [];
  for (const c of st.convs.values()) {
    if (c.status === "queued") queued.push(c);
    else if (isMine(c)) mine.push(c);
  }
  queued.sort((a, b) => (a.queue_position || 1e9) - (b.queue_position || 1e9));
  mine.sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));
  const q = clear($("queue"));
  for (const c of queued) q.appendChild(convItem(c));
  if (!queued.length) q.appendChild(el("li", "empty", "Nobody is waiting."));
  const m = clear($("mine"));
  for (const c of mine) m.appendChild(convItem(c));
  if (!mine.length) m.appendChild(el("li", "empty", "No open conversations."));
  $("queue-count").textContent = String(queued.length);
  $("mine-count").textContent = String(mine.length);
  renderSnoozed();
}

// ---- a thread ----------------------------------------------------------------------------
function thread(cid) {
  let t = st.threads.get(cid);
  if (!t) {
    t = { messages: new Map(), lastSeq: 0, drafts: new Map(), loaded: false };
    st.threads.set(cid, t);
  }
  return t;
}

function select(cid) {
  st.selected = cid;
  $("placeholder").hidden = true;
  $("conversation").hidden = false;
  clear($("drafts"));
  $("typing").hidden = true;
  const t = thread(cid);
  renderLists();
  renderHead();
  renderThread();
  renderStaged();
  closeCanned();
  renderLabels();
  loadConvLabels(cid);
  loadRating(cid);
  if (!t.loaded) send({ type: "subscribe", conversation_id: cid, after_seq: t.lastSeq, ref: "sub:" + cid });
  $("reply").focus();
}

function renderHead() {
  const c = st.convs.get(st.selected);
  if (!c) return;
  $("conv-title").textContent = "Visitor " + String(c.user_id || "");
  const status = $("conv-status");
  let text = c.status;
  if (c.status === "assigned") text = isMine(c) ? "assigned to you" : "assigned to another agent";
  if (c.status === "queued" && c.queue_position) text += " · #" + c.queue_position + " in queue";
  status.textContent = text;
  status.dataset.status = c.status;
  const pres = st.userPresence.get(c.user_id);
  $("conv-user-presence").textContent = pres ? "· visitor " + pres : "";
  $("claim").hidden = isMine(c) || c.status === "resolved";
  $("handback").hidden = !isMine(c);
  $("resolve").hidden = !isMine(c);
  $("transfer").hidden = !(isMine(c) || c.status === "bot" || c.status === "queued");
  $("snooze-for").hidden = !isMine(c);
  $("wake").hidden = !isSnoozedMine(c);
  if ($("transfer").hidden) $("transfer-form").hidden = true;
}

function messageEl(m) {
  const kind = m.kind === "note" ? "note" : m.kind === "system" ? "system" : (m.sender && m.sender.kind) || "system";
  const box = el("div", "msg msg-" + kind);
  box.dataset.seq = String(m.seq);
  box.dataset.testid = "message";
  if (kind === "system") {
    box.appendChild(el("div", "text", m.text));
    return box;
  }
  let who = (m.sender && m.sender.name) || kind;
  if (kind === "note") who = "📝 " + ((m.sender && m.sender.name) || "Note") + " (agents only)";
  if (kind === "bot") who += " · AI";
  const headRow = el("div", "who");
  headRow.appendChild(el("span", "", who));
  headRow.appendChild(el("span", "time", fmtTime(m.created_at) + " · #" + m.seq));
  box.appendChild(headRow);
  if (m.reply_to) box.appendChild(quoteEl(m.reply_to));
  if (m.deleted) {
    box.classList.add("deleted");
    const gone = el("div", "text gone", "This message was deleted");
    gone.dataset.testid = "deleted";
    box.appendChild(gone);
    return box;
  }
  const body = richText(el("div", "text"), m.text);
  body.dataset.testid = "text";
  box.appendChild(body);
  if (m.citations && m.citations.length) box.appendChild(citations(m.citations));
  if (Array.isArray(m.attachments) && m.attachments.length) box.appendChild(attachmentsEl(m.attachments));
  if (m.rich) box.appendChild(richEl(m.rich));
  box.appendChild(reactionsEl(m));
  if (m.edited_at) {
    const ed = el("div", "edited", "edited");
    ed.dataset.testid = "edited";
    box.appendChild(ed);
  }
  box.appendChild(toolsEl(m));
  return box;
}

// ---- quotes, edits, deletes, reactions, rich messages --------------------------------------
function senderLabel(s) {
  if (!s) return "";
  if (st.me && s.kind === "agent" && s.id === st.me.id) return "You";
  return s.name || (s.kind === "user" ? "Visitor" : s.kind === "bot" ? "Assistant" : s.kind);
}
function quoteEl(q) {
  const box = el("div", "quote");
  box.dataset.testid = "quote";
  box.appendChild(el("div", "quote-who", senderLabel(q.sender)));
  box.appendChild(el("div", "quote-text", q.deleted ? "Deleted message" : q.text));
  return box;
}
function tool(label, testid, onClick) {
  const b = el("button", "tool", label);
  b.type = "button";
  b.dataset.testid = testid;
  b.addEventListener("click", onClick);
  return b;
}
function toolsEl(m) {
  const bar = el("div", "tools");
  if (m.kind === "system") return bar;
  bar.appendChild(tool("Reply", "reply-to", () => startReply(m)));
  const picker = el("span", "picker");
  picker.hidden = true;
  for (const e of st.emojis) picker.appendChild(tool(e, "emoji", () => {
    picker.hidden = true;
    react(m, e);
  }));
  bar.appendChild(tool("☺+", "react", () => (picker.hidden = !picker.hidden)));
  const mine = st.me && m.sender && m.sender.kind === "agent" && m.sender.id === st.me.id;
  if (mine && Date.now() - Date.parse(m.created_at) < st.editWindowMs) {
    bar.appendChild(tool("Edit", "edit", () => startEdit(m)));
    // Two clicks, no dialog: "Delete" asks "Delete for everyone?" first.
    const del = tool("Delete", "delete", async () => {
      if (!del.dataset.armed) {
        del.dataset.armed = "1";
        del.textContent = "Delete for everyone?";
        return;
      }
      try {
        await call("DELETE", `/v1/conversations/${encodeURIComponent(st.selected)}/messages/${encodeURIComponent(m.id)}`);
      } catch (e) {
        toast("Not deleted: " + e.message);
      }
    });
    bar.appendChild(del);
  }
  bar.appendChild(picker);
  return bar;
}
function reactionsEl(m) {
  const row = el("div", "reactions");
  row.dataset.testid = "reactions";
  for (const r of m.reactions || []) {
    const chip = tool(r.emoji + " " + r.count, "reaction", () => react(m, r.emoji));
    chip.classList.add("reaction");
    if (r.mine) chip.classList.add("reaction-mine");
    row.appendChild(chip);
  }
  return row;
}
function react(m, emoji) {
  const mine = (m.reactions || []).some((r) => r.emoji === emoji && r.mine);
  send({ type: mine ? "reaction.remove" : "reaction.add", conversation_id: st.selected, message_id: m.id, emoji,
    ref: "x" + ++st.refs });
}
// What the visitor was offered (read-only here: the visitor presses the buttons).
function richEl(r) {
  const box = el("div", "rich");
  if (r.card && r.card.title) {
    const card = el("div", "card-msg");
    card.appendChild(el("div", "card-title", r.card.title));
    if (r.card.text) card.appendChild(el("div", "", r.card.text));
    const href = safeHref(r.card.url);
    if (href) card.appendChild(link(href, r.card.link_label || href));
    box.appendChild(card);
  }
  if (r.form && Array.isArray(r.form.fields)) {
    box.appendChild(el("div", "card-msg", "Form: " + (r.form.title || "") + " (" +
      r.form.fields.map((f) => f.label).join(", ") + ")"));
  }
  if (Array.isArray(r.quick_replies)) {
    const row = el("div", "quick");
    row.dataset.testid = "quick-replies";
    for (const q of r.quick_replies) row.appendChild(el("span", "quick-chip", q.label));
    box.appendChild(row);
  }
  return box;
}
function showBar(text) {
  $("replybar-text").textContent = text;
  $("replybar").hidden = false;
  $("reply").focus();
}
function startReply(m) {
  st.editing = null;
  st.replyTo = m;
  showBar("Replying to " + senderLabel(m.sender) + ": " + String(m.text || "").slice(0, 80));
}
function startEdit(m) {
  st.replyTo = null;
  st.editing = m;
  $("reply").value = m.text || "";
  showBar("Editing your message");
}
function clearBar() {
  st.replyTo = null;
  st.editing = null;
  $("replybar").hidden = true;
}
$("replybar-x").addEventListener("click", () => {
  if (st.editing) $("reply").value = "";
  clearBar();
});
function replaceMessage(cid, m) {
  const t = st.threads.get(cid);
  if (!t) return;
  t.messages.set(m.seq, m);
  if (cid !== st.selected) return;
  const old = $("log").querySelector(`.msg[data-seq="${m.seq}"]`);
  if (old) old.replaceWith(messageEl(m));
  renderRead();
}
// The message, and every reply quoting it, as the server now says it is.
function changed(cid, seq, update) {
  const t = st.threads.get(cid);
  const old = t && t.messages.get(seq);
  if (!old) return;
  const m = update(old);
  replaceMessage(cid, m);
  for (const other of t.messages.values()) {
    if (other.reply_to && other.reply_to.id === m.id) {
      replaceMessage(cid, { ...other, reply_to: { ...other.reply_to, text: m.deleted ? "" : String(m.text || "").slice(0, 200),
        ...(m.deleted ? { deleted: true } : {}) } });
    }
  }
}
function onReaction(f) {
  changed(f.conversation_id, f.seq, (old) => {
    const list = (old.reactions || []).map((r) => ({ ...r }));
    let r = list.find((x) => x.emoji === f.emoji);
    if (!r) {
      r = { emoji: f.emoji, count: 0, mine: false };
      list.push(r);
    }
    r.count = f.count;
    if (f.participant && st.me && f.participant.kind === "agent" && f.participant.id === st.me.id) r.mine = f.active;
    return { ...old, reactions: list.filter((x) => x.count > 0) };
  });
}
// Once subscribed: the messages' current state (edits, deletes, reactions) and the visitor's read mark.
async function refreshThread(cid) {
  try {
    let after = 0;
    for (;;) {
      const r = await call("GET", `/v1/conversations/${encodeURIComponent(cid)}/messages?after_seq=${after}&limit=200`);
      const t = st.threads.get(cid);
      for (const m of r.messages || []) {
        if (t && t.messages.has(m.seq)) replaceMessage(cid, m);
        else addMessage(cid, m);
      }
      if (!r.messages || r.messages.length < 200) break;
      after = r.next_after_seq;
    }
    const reads = await call("GET", `/v1/conversations/${encodeURIComponent(cid)}/reads`);
    for (const x of reads.reads || []) {
      if (x.participant.kind === "user") st.readBy.set(cid, Math.max(st.readBy.get(cid) || 0, x.seq));
    }
    if (cid === st.selected) renderRead();
  } catch (_e) { /* the live frames still arrive */ }
}

// ---- attachments -------------------------------------------------------------------------
// Files are served only with the agent's token: fetched, then shown from blob: URLs.
const attachmentPath = (a) => `/v1/attachments/${encodeURIComponent(String(a.id))}`;
async function authedBlob(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + st.token } });
  if (!r.ok) throw new Error(`download failed (${r.status})`);
  return URL.createObjectURL(await r.blob());
}
function fmtSize(n) {
  n = Number(n) || 0;
  return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB";
}
function download(a) {
  authedBlob(attachmentPath(a))
    .then((u) => {
      const link = el("a");
      link.href = u;
      link.download = String(a.name || "file");
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(u), 60000);
    })
    .catch((e) => toast(e.message));
}
function attachmentsEl(list) {
  const wrap = el("div", "files");
  for (const a of list) {
    if (!a || typeof a.id !== "string") continue;
    if (a.thumbnail_url) {
      const img = el("img", "thumb");
      img.alt = String(a.name || "image");
      img.title = `${a.name || "image"} · ${a.width}×${a.height} · click to download`;
      img.dataset.testid = "thumb";
      authedBlob(attachmentPath(a) + "/thumbnail").then((u) => (img.src = u)).catch(() => {});
      img.addEventListener("click", () => download(a));
      wrap.appendChild(img);
    } else {
      const b = el("button", "ghost file", `📄 ${a.name || "file"} · ${fmtSize(a.size)}`);
      b.type = "button";
      b.dataset.testid = "file-link";
      b.addEventListener("click", () => download(a));
      wrap.appendChild(b);
    }
  }
  return wrap;
}
// Uploaded files wait here (per conversation) until the next reply carries them.
const staged = new Map(); // cid -> [{id, name}]
function renderStaged() {
  const box = clear($("staged"));
  const list = staged.get(st.selected) || [];
  box.hidden = !list.length;
  for (const a of list) box.appendChild(el("span", "chip", "📎 " + a.name));
}
async function uploadFiles(files) {
  const cid = st.selected;
  if (!cid) return;
  for (const file of files) {
    const fd = new FormData();
    fd.append("file", file, file.name || "pasted-image.png");
    try {
      const r = await fetch(`/v1/conversations/${encodeURIComponent(cid)}/attachments`, {
        method: "POST", headers: { Authorization: "Bearer " + st.token }, body: fd });
      const data = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error((data.error && data.error.detail) || `upload failed (${r.status})`);
      staged.set(cid, [...(staged.get(cid) || []), { id: data.attachment.id, name: data.attachment.name }]);
      renderStaged();
    } catch (e) {
      toast(`Could not attach ${file.name || "the file"}: ${e.message}`);
    }
  }
}
$("attach").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => {
  uploadFiles(Array.from($("file").files || []));
  $("file").value = "";
});
$("reply").addEventListener("paste", (e) => {
  const files = Array.from((e.clipboardData && e.clipboardData.files) || []);
  if (!files.length) return;
  e.preventDefault();
  uploadFiles(files);
});
$("conversation").addEventListener("dragover", (e) => {
  if (e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files")) e.preventDefault();
});
$("conversation").addEventListener("drop", (e) => {
  const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []);
  if (!files.length) return;
  e.preventDefault();
  uploadFiles(files);
});

function renderThread() {
  const log = clear($("log"));
  const t = thread(st.selected);
  const seqs = [...t.messages.keys()].sort((a, b) => a - b);
  for (const s of seqs) log.appendChild(messageEl(t.messages.get(s)));
  for (const d of t.drafts.values()) log.appendChild(d.el);
  renderRead();
  log.scrollTop = log.scrollHeight;
}

function renderRead() {
  const log = $("log");
  for (const n of log.querySelectorAll(".read")) n.remove();
  const seq = st.readBy.get(st.selected) || 0;
  if (!seq) return;
  let target = null;
  for (const n of log.querySelectorAll(".msg-agent[data-seq]")) if (Number(n.dataset.seq) <= seq) target = n;
  if (target) target.appendChild(el("div", "read", "Seen by the visitor"));
}

function addMessage(cid, m) {
  const t = st.threads.get(cid);
  if (!t) return; // not opened yet: it will be replayed from the database when it is
  if (t.messages.has(m.seq)) return;
  t.messages.set(m.seq, m);
  if (m.draft_id && t.drafts.has(m.draft_id)) {
    t.drafts.get(m.draft_id).el.remove();
    t.drafts.delete(m.draft_id);
  }
  const gapFrom = t.lastSeq;
  if (m.seq > t.lastSeq) t.lastSeq = m.seq;
  if (m.seq > gapFrom + 1 && t.loaded) fillGap(cid, gapFrom);
  if (cid === st.selected) {
    const log = $("log");
    const node = messageEl(m);
    const after = [...log.querySelectorAll(".msg[data-seq]")].find((n) => Number(n.dataset.seq) > m.seq);
    if (after) log.insertBefore(node, after);
    else {
      const draft = log.querySelector(".msg.streaming");
      if (draft) log.insertBefore(node, draft);
      else log.appendChild(node);
    }
    renderRead();
    log.scrollTop = log.scrollHeight;
    if (m.sender && m.sender.kind === "user") $("typing").hidden = true;
    markRead();
  }
}

function onDelta(f) {
  const t = st.threads.get(f.conversation_id);
  if (!t) return;
  let d = t.drafts.get(f.draft_id);
  if (!d) {
    const box = el("div", "msg msg-bot streaming");
    box.appendChild(el("div", "who", "Assistant · AI (writing…)"));
    const body = el("div", "text");
    box.appendChild(body);
    d = { parts: [], el: box, body };
    t.drafts.set(f.draft_id, d);
    if (f.conversation_id === st.selected) $("log").appendChild(box);
  }
  d.parts[f.index] = String(f.delta || "");
  let text = "";
  for (let i = 0; i < d.parts.length && d.parts[i] !== undefined; i++) text += d.parts[i];
  d.body.textContent = text;
}

const gapFetches = new Set();
async function fillGap(cid, from) {
  if (gapFetches.has(cid)) return;
  gapFetches.add(cid);
  try {
    let after = from;
    for (;;) {
      const r = await call("GET", `/v1/conversations/${encodeURIComponent(cid)}/messages?after_seq=${after}&limit=200`);
      for (const m of r.messages || []) addMessage(cid, m);
      if (!r.messages || r.messages.length < 200) break;
      after = r.next_after_seq;
    }
  } catch (_e) { /* next frame retries */ } finally {
    gapFetches.delete(cid);
  }
}

function markRead() {
  const t = st.threads.get(st.selected);
  if (!t || !t.lastSeq || document.visibilityState === "hidden") return;
  if ((t.sentRead || 0) >= t.lastSeq) return;
  t.sentRead = t.lastSeq;
  send({ type: "read", conversation_id: st.selected, seq: t.lastSeq });
}
document.addEventListener("visibilitychange", markRead);

// ---- actions -----------------------------------------------------------------------------
async function action(name) {
  const cid = st.selected;
  if (!cid) return;
  try {
    const r = await call("POST", `/v1/conversations/${encodeURIComponent(cid)}/${name}`);
    upsertConv(r.conversation);
    if (name === "claim" && !thread(cid).loaded) send({ type: "subscribe", conversation_id: cid, after_seq: 0 });
  } catch (e) {
    toast(`Could not ${name}: ${e.message}`);
  }
}
$("claim").addEventListener("click", () => action("claim"));
$("resolve").addEventListener("click", () => action("resolve"));
$("handback").addEventListener("click", () => action("handback"));

function quickReplies() {
  const raw = $("quick").value.trim();
  if (!raw) return null;
  const items = raw.split(",").map((x) => x.trim()).filter(Boolean).slice(0, 10).map((x) => x.slice(0, 40));
  return items.length ? { quick_replies: items.map((x) => ({ label: x, value: x })) } : null;
}
async function submitEdit(m, text) {
  clearBar();
  $("reply").value = "";
  if (text === m.text) return;
  try {
    await call("PATCH", `/v1/conversations/${encodeURIComponent(st.selected)}/messages/${encodeURIComponent(m.id)}`, { text });
  } catch (err) {
    toast("Not edited: " + err.message);
  }
}
$("reply-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if ($("note-mode").checked) return void sendNote();
  const text = $("reply").value.trim();
  const files = (staged.get(st.selected) || []).map((a) => a.id);
  if ((!text && !files.length) || !st.selected) return;
  if (st.editing) {
    if (text) submitEdit(st.editing, text);
    return;
  }
  const body = { type: "send", conversation_id: st.selected, client_msg_id: uuid(), text, ref: "r" + ++st.refs };
  if (files.length) body.attachments = files;
  if (st.replyTo) body.reply_to = st.replyTo.id;
  const rich = quickReplies();
  if (rich) body.rich = rich;
  const sent = () => {
    $("reply").value = "";
    $("quick").value = "";
    clearBar();
    staged.delete(body.conversation_id);
    renderStaged();
  };
  if (send(body)) {
    sent();
    stopTyping();
  } else {
    // Offline: REST has the same promises as the socket.
    const rest = { client_msg_id: body.client_msg_id, text, ...(files.length ? { attachments: files } : {}),
      ...(body.reply_to ? { reply_to: body.reply_to } : {}), ...(body.rich ? { rich: body.rich } : {}) };
    call("POST", `/v1/conversations/${encodeURIComponent(st.selected)}/messages`, rest)
      .then(sent)
      .catch((err) => toast("Not sent: " + err.message));
  }
});
$("reply").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("reply-form").requestSubmit();
});
function stopTyping() {
  clearTimeout(st.typingTimer);
  if (st.typingSentAt && st.selected) send({ type: "typing", conversation_id: st.selected, active: false });
  st.typingSentAt = 0;
}
$("reply").addEventListener("input", () => {
  if (!st.selected) return;
  if (Date.now() - st.typingSentAt > 3000) {
    st.typingSentAt = Date.now();
    send({ type: "typing", conversation_id: st.selected, active: true });
  }
  clearTimeout(st.typingTimer);
  st.typingTimer = setTimeout(stopTyping, 4000);
});

$("suggest").addEventListener("click", async () => {
  const cid = st.selected;
  const list = clear($("drafts"));
  list.appendChild(el("li", "muted", "Looking in the knowledge base…"));
  try {
    const r = await call("GET", `/v1/conversations/${encodeURIComponent(cid)}/suggestions`);
    clear(list);
    if (!r.drafts || !r.drafts.length) list.appendChild(el("li", "muted", "No suggestions for this conversation."));
    for (const d of r.drafts || []) {
      const li = el("li", "draft");
      li.dataset.testid = "draft";
      li.appendChild(richText(el("div", "text"), d.text));
      if (d.citations && d.citations.length) li.appendChild(citations(d.citations));
      const use = el("button", "ghost", "Insert");
      use.dataset.testid = "insert";
      use.addEventListener("click", () => {
        $("reply").value = d.text;
        $("reply").focus();
      });
      li.appendChild(use);
      list.appendChild(li);
    }
  } catch (e) {
    clear(list).appendChild(el("li", "error", "Suggestions failed: " + e.message));
  }
});

// ---- the desk: canned responses on "/", labels on the conversation ------------------------
const desk = { canned: [], labels: [], convLabels: new Map(), offered: [], active: 0 };

async function loadDesk() {
  try {
    desk.canned = (await call("GET", "/v1/canned-responses")).canned_responses || [];
  } catch (e) {
    toast("Canned responses failed to load: " + e.message);
  }
  try {
    desk.labels = (await call("GET", "/v1/labels")).labels || [];
  } catch (e) {
    toast("Labels failed to load: " + e.message);
  }
  renderLabels();
  renderFindLabels();
}

/** The "/word" that ends at the caret (at the start or after a space), or null. */
function slashToken() {
  const box = $("reply");
  const upto = box.value.slice(0, box.selectionStart);
  const m = /(^|\s)\/([\w-]*)$/.exec(upto);
  return m ? { start: upto.length - m[2].length - 1, end: upto.length, word: m[2].toLowerCase() } : null;
}

function closeCanned() {
  desk.offered = [];
  clear($("canned")).hidden = true;
}

function offerCanned() {
  const tok = slashToken();
  if (!tok || !st.selected) return closeCanned();
  desk.offered = desk.canned.filter((c) => c.shortcut.startsWith(tok.word) || c.title.toLowerCase().includes(tok.word));
  desk.active = 0;
  const list = clear($("canned"));
  if (!desk.offered.length) return closeCanned();
  desk.offered.slice(0, 20).forEach((c, i) => {
    const li = el("li", i === desk.active ? "active" : "");
    li.setAttribute("role", "option");
    li.dataset.testid = "canned-option";
    li.appendChild(el("span", "shortcut", "/" + c.shortcut));
    li.appendChild(el("span", "title", c.title));
    li.appendChild(el("span", "scope", c.scope === "agent" ? "mine" : "team"));
    li.addEventListener("mousedown", (e) => {
      e.preventDefault();
      insertCanned(c);
    });
    list.appendChild(li);
  });
  list.hidden = false;
}

function moveCanned(step) {
  const items = [...$("canned").children];
  if (!items.length) return;
  desk.active = (desk.active + step + items.length) % items.length;
  items.forEach((li, i) => li.classList.toggle("active", i === desk.active));
}

async function insertCanned(c) {
  const cid = st.selected;
  const tok = slashToken();
  closeCanned();
  try {
    const r = await call("GET", `/v1/canned-responses/${encodeURIComponent(c.id)}/render?conversation_id=${encodeURIComponent(cid)}`);
    if (st.selected !== cid) return;
    const box = $("reply");
    const start = tok ? tok.start : box.value.length;
    const end = tok ? tok.end : box.value.length;
    box.value = box.value.slice(0, start) + r.text + box.value.slice(end);
    const caret = start + r.text.length;
    box.focus();
    box.setSelectionRange(caret, caret);
  } catch (e) {
    toast("Canned response failed: " + e.message);
  }
}

$("reply").addEventListener("input", offerCanned);
$("reply").addEventListener("blur", () => setTimeout(closeCanned, 150));
$("reply").addEventListener("keydown", (e) => {
  if ($("canned").hidden || !desk.offered.length) return;
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    e.preventDefault();
    moveCanned(e.key === "ArrowDown" ? 1 : -1);
  } else if ((e.key === "Enter" && !e.ctrlKey && !e.metaKey) || e.key === "Tab") {
    e.preventDefault();
    e.stopImmediatePropagation();
    insertCanned(desk.offered[desk.active]);
  } else if (e.key === "Escape") {
    closeCanned();
  }
});

const COLOUR = /^#[0-9a-f]{6}$/i;

function renderLabels() {
  const cid = st.selected;
  const box = clear($("labels"));
  const on = (cid && desk.convLabels.get(cid)) || [];
  for (const l of on) {
    const chip = el("span", "label-chip", l.name);
    chip.dataset.testid = "label";
    chip.style.background = COLOUR.test(l.colour) ? l.colour : "#6b7280";
    const x = el("button", "", "×");
    x.type = "button";
    x.setAttribute("aria-label", "Remove label " + l.name);
    x.addEventListener("click", () => changeLabel(cid, l.id, "DELETE"));
    chip.appendChild(x);
    box.appendChild(chip);
  }
  const add = clear($("label-add"));
  const free = desk.labels.filter((l) => !on.some((o) => o.id === l.id));
  add.hidden = !cid || !free.length;
  const first = el("option", "", "+ label");
  first.value = "";
  add.appendChild(first);
  for (const l of free) {
    const o = el("option", "", l.name);
    o.value = l.id;
    add.appendChild(o);
  }
}

async function loadConvLabels(cid) {
  try {
    desk.convLabels.set(cid, (await call("GET", `/v1/conversations/${encodeURIComponent(cid)}/labels`)).labels || []);
    if (st.selected === cid) renderLabels();
  } catch (e) {
    toast("Labels failed to load: " + e.message);
  }
}

async function changeLabel(cid, labelId, method) {
  try {
    const r = await call(method, `/v1/conversations/${encodeURIComponent(cid)}/labels/${encodeURIComponent(labelId)}`);
    desk.convLabels.set(cid, r.labels || []);
    if (st.selected === cid) renderLabels();
  } catch (e) {
    toast("Label not changed: " + e.message);
  }
}

$("label-add").addEventListener("change", (e) => {
  const id = e.target.value;
  if (id && st.selected) changeLabel(st.selected, id, "PUT");
});

// ---- find: search the tenant's messages, or list conversations by label and status ----------
function renderFindLabels() {
  const sel = $("find-label");
  const keep = sel.value;
  clear(sel);
  const any = el("option", "", "any label");
  any.value = "";
  sel.appendChild(any);
  for (const l of desk.labels) {
    const o = el("option", "", l.name);
    o.value = l.id;
    sel.appendChild(o);
  }
  sel.value = desk.labels.some((l) => l.id === keep) ? keep : "";
}

function foundItem(cid, title, meta, snippet) {
  const li = el("li", "conv" + (cid === st.selected ? " active" : ""));
  li.dataset.cid = cid;
  li.dataset.testid = "found-item";
  li.appendChild(el("div", "conv-name", title));
  li.appendChild(el("div", "conv-meta", meta));
  if (snippet) li.appendChild(el("div", "found-snippet", snippet));
  li.addEventListener("click", () => select(cid));
  return li;
}

async function find() {
  const q = $("find-q").value.trim();
  const status = $("find-status").value;
  const label = $("find-label").value;
  const params = new URLSearchParams();
  if (status) params.set("status", status);
  if (label) params.set("label", label);
  const list = clear($("found"));
  $("found-box").hidden = false;
  let items = [];
  try {
    if (q) {
      params.set("q", q);
      const r = await call("GET", "/v1/search?" + params);
      for (const h of r.results || []) {
        // a hit's conversation may be outside the live lists (resolved, another agent's)
        if (!st.convs.has(h.conversation_id)) {
          upsertConv({ id: h.conversation_id, status: h.status, user_id: h.user_id, assignee: h.assignee_id }, true);
        }
        const who = h.sender_kind === "user" ? "visitor" : h.sender_name || h.sender_kind;
        items.push(foundItem(h.conversation_id, "Visitor " + String(h.user_id).slice(-6),
          h.status + " · " + who + " · " + fmtTime(h.created_at), h.text.slice(0, 160)));
      }
    } else if (status || label) {
      params.set("limit", "200");
      const r = await call("GET", "/v1/conversations?" + params);
      for (const c of r.conversations || []) {
        if (!st.convs.has(c.id)) upsertConv(c, true);
        items.push(foundItem(c.id, "Visitor " + String(c.user_id || "").slice(-6), c.status, ""));
      }
    } else {
      $("found-box").hidden = true;
      return;
    }
  } catch (e) {
    toast("Search failed: " + e.message);
    items = [];
  }
  for (const li of items) list.appendChild(li);
  if (!items.length) list.appendChild(el("li", "empty", "Nothing found."));
  $("found-count").textContent = String(items.length);
}

$("find").addEventListener("submit", (e) => {
  e.preventDefault();
  find();
});
$("find-label").addEventListener("change", find);
$("find-status").addEventListener("change", find);
$("found-close").addEventListener("click", () => {
  $("find-q").value = "";
  $("find-status").value = "";
  $("find-label").value = "";
  $("found-box").hidden = true;
});

// ---- CSAT: the visitor's rating of the conversation, with who it rated ------------------------
async function loadRating(cid) {
  const box = $("conv-rating");
  box.hidden = true;
  let r;
  try {
    r = await call("GET", `/v1/conversations/${encodeURIComponent(cid)}/rating`);
  } catch (_e) {
    return; // 404: not rated
  }
  if (st.selected !== cid) return;
  const who = r.resolver_kind === "ai" ? "the AI" : "a person";
  box.textContent = "· rated " + "★".repeat(r.score) + "☆".repeat(5 - r.score) + " (" + who + ")" +
    (r.comment ? " “" + r.comment + "”" : "");
  box.hidden = false;
}

// ---- desk operations: private notes with @mentions, the mentions list, transfer ------------
const ops = { agents: [], teams: [], mentions: [], unread: 0 };

async function loadOps() {
  try {
    const d = await call("GET", "/v1/desk/directory");
    ops.agents = d.agents || [];
    ops.teams = d.teams || [];
  } catch (e) {
    toast("Colleagues failed to load: " + e.message);
  }
  try {
    const m = await call("GET", "/v1/mentions?limit=50");
    ops.mentions = m.mentions || [];
    ops.unread = m.unread || 0;
  } catch (e) {
    toast("Mentions failed to load: " + e.message);
  }
  renderMentions();
}

function renderMentions() {
  const box = clear($("mentions"));
  for (const m of ops.mentions.slice(0, 20)) {
    const li = el("li", "conv" + (m.read_at ? "" : " unread"));
    li.dataset.testid = "mention";
    li.dataset.cid = m.conversation_id;
    li.appendChild(el("div", "conv-name", "@ from " + (m.author_name || "an agent")));
    li.appendChild(el("div", "conv-meta", String(m.text || "").slice(0, 80)));
    li.addEventListener("click", () => openMention(m));
    box.appendChild(li);
  }
  if (!ops.mentions.length) box.appendChild(el("li", "empty", "Nobody mentioned you."));
  $("mention-count").textContent = String(ops.unread);
}

function onMention(f) {
  const m = f.mention || {};
  const row = { conversation_id: f.conversation_id, message_id: m.message_id, seq: m.seq, author_name: m.author_name,
                text: m.text, read_at: null };
  if (!ops.mentions.some((x) => x.message_id === row.message_id)) {
    ops.mentions.unshift(row);
    ops.unread += 1;
  }
  renderMentions();
  if (f.message) addMessage(f.conversation_id, f.message);
  toast((m.author_name || "An agent") + " mentioned you: " + String(m.text || "").slice(0, 120));
}

async function openMention(m) {
  if (!st.convs.has(m.conversation_id)) st.convs.set(m.conversation_id, { id: m.conversation_id, status: "" });
  select(m.conversation_id);
  if (m.read_at) return;
  try {
    const r = await call("POST", `/v1/mentions/${encodeURIComponent(m.message_id)}/read`);
    m.read_at = r.read_at;
    ops.unread = Math.max(0, ops.unread - 1);
    renderMentions();
  } catch (e) {
    toast("Mention not marked read: " + e.message);
  }
}

async function sendNote() {
  const cid = st.selected;
  const text = $("reply").value.trim();
  if (!cid || !text) return;
  try {
    const r = await call("POST", `/v1/conversations/${encodeURIComponent(cid)}/notes`, { text, client_msg_id: uuid() });
    $("reply").value = "";
    addMessage(cid, r.message);
    const names = (r.mentions || []).map((a) => a.name);
    if (names.length) toast("Note sent; told " + names.join(", "));
    if ((r.unresolved || []).length) toast("Nobody here is called @" + r.unresolved.join(", @"));
  } catch (e) {
    toast("Note not sent: " + e.message);
  }
}

$("note-mode").addEventListener("change", (e) => {
  $("reply-form").classList.toggle("noting", e.target.checked);
  $("reply").placeholder = e.target.checked
    ? "A private note for the agents (@name or @email tells a colleague)…"
    : "Reply to the visitor… (type / for a canned response; paste or drop a file to attach it)";
});

$("transfer").addEventListener("click", () => {
  const pick = clear($("transfer-to"));
  const add = (value, text) => {
    const o = el("option", "", text);
    o.value = value;
    pick.appendChild(o);
  };
  for (const a of ops.agents) {
    if (st.me && a.id === st.me.id) continue;
    add("agent:" + a.id, a.name + (a.online ? " ● online" : " ○ offline") + ` (${a.free} free)`);
  }
  for (const t of ops.teams) add("team:" + t.id, "Team " + t.name);
  $("transfer-form").hidden = false;
  $("transfer-comment").focus();
});
$("transfer-cancel").addEventListener("click", () => ($("transfer-form").hidden = true));
$("transfer-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const cid = st.selected;
  const [kind, id] = String($("transfer-to").value).split(":");
  if (!cid || !id) return;
  const body = kind === "team" ? { team_id: id } : { agent_id: id };
  const comment = $("transfer-comment").value.trim();
  if (comment) body.comment = comment;
  try {
    const r = await call("POST", `/v1/conversations/${encodeURIComponent(cid)}/transfer`, body);
    upsertConv(r.conversation);
    $("transfer-form").hidden = true;
    $("transfer-comment").value = "";
    toast(r.conversation.status === "queued" ? "Transferred: waiting for the team" : "Transferred");
  } catch (err) {
    toast("Not transferred: " + err.message);
  }
});

// ---- snooze: put a conversation aside until a time -------------------------------------------
function isSnoozedMine(c) {
  return c.status === "snoozed" && st.me && c.assignee === st.me.id;
}

function renderSnoozed() {
  const mine = [...st.convs.values()].filter(isSnoozedMine);
  const box = clear($("snoozed"));
  for (const c of mine) box.appendChild(convItem(c));
  if (!mine.length) box.appendChild(el("li", "empty", "Nothing snoozed."));
  $("snoozed-count").textContent = String(mine.length);
}

async function loadSnoozed() {
  try {
    const r = await call("GET", "/v1/conversations?status=snoozed&limit=200");
    for (const c of r.conversations || []) upsertConv(c, true);
    renderLists();
  } catch (_e) { /* shown by call() when it matters */ }
}

$("snooze-for").addEventListener("change", async (e) => {
  const secs = Number(e.target.value);
  e.target.value = "";
  const cid = st.selected;
  if (!cid || !secs) return;
  try {
    const until = new Date(Date.now() + secs * 1000).toISOString();
    const r = await call("POST", `/v1/conversations/${encodeURIComponent(cid)}/snooze`, { until });
    upsertConv(r.conversation);
    toast("Snoozed until " + new Date(r.snoozed_until).toLocaleString());
  } catch (err) {
    toast("Not snoozed: " + err.message);
  }
});
$("wake").addEventListener("click", async () => {
  const cid = st.selected;
  if (!cid) return;
  try {
    upsertConv((await call("POST", `/v1/conversations/${encodeURIComponent(cid)}/wake`)).conversation);
  } catch (err) {
    toast("Not woken: " + err.message);
  }
});

// ---- debug / test hooks -------------------------------------------------------------------
window.__console = {
  drop() {
    if (st.ws) st.ws.close(4000, "debug drop");
  },
  seqs(cid) {
    const t = st.threads.get(cid || st.selected);
    return t ? [...t.messages.keys()].sort((a, b) => a - b) : [];
  },
  state() {
    return { connected: st.connected, selected: st.selected, me: st.me };
  },
};

// ---- boot ----------------------------------------------------------------------------------
try {
  const saved = JSON.parse(sessionStorage.getItem(SESSION) || "null");
  if (saved && saved.token) start(saved.token, saved.agentId);
  else showLogin();
} catch (_e) {
  showLogin();
}
