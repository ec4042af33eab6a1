/* Parley chat widget. Embed with one tag:
 *   <script src="https://parley.example.com/widget.js" data-widget-key="wk_..." async></script>
 * It injects a chat launcher and panel (in a shadow root), talks to /v1/ws and the REST API of
 * the server it was loaded from, and renders everything people or the model wrote as text.
 * A classic script (not a module) so that document.currentScript gives its data attributes. */
(function () {
  "use strict";
  const script = document.currentScript;
  if (!script || window.__parley) return;
  const widgetKey = script.dataset.widgetKey || "";
  const title = script.dataset.title || "Chat with us";
  const base = new URL(script.src, location.href).origin;
  const wsUrl = base.replace(/^http/, "ws") + "/v1/ws";
  const storeKey = "parley:" + widgetKey;
  // Who the visitor is, when the business's page says so (identity verification: README): data-user-id
  // with data-user-hash (HMAC-SHA256 of the id with the tenant's identity secret), or data-user-jwt.
  const identity = {
    user_id: script.dataset.userId || undefined,
    user_hash: script.dataset.userHash || undefined,
    user_jwt: script.dataset.userJwt || undefined,
    name: script.dataset.userName || undefined,
  };
  const identityKey = identity.user_jwt ? "jwt:" + identity.user_jwt : identity.user_id ? "id:" + identity.user_id : "";

  // ---- safe rendering ------------------------------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function safeHref(raw) {
    try {
      const u = new URL(String(raw));
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (_e) {
      return null;
    }
  }
  function link(href, text) {
    const a = el("a", "pw-link", text);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.referrerPolicy = "no-referrer";
    return a;
  }
  // Plain text with bare http(s) URLs turned into links; never parsed as HTML or markdown.
  function richText(parent, text) {
    const re = /https?:\/\/[^\s<>"'`)\]]+/g;
    let last = 0;
    let m;
    const s = String(text || "");
    while ((m = re.exec(s))) {
      if (m.index > last) parent.appendChild(document.createTextNode(s.slice(last, m.index)));
      const href = safeHref(m[0]);
      parent.appendChild(href ? link(href, m[0]) : document.createTextNode(m[0]));
      last = m.index + m[0].length;
    }
    if (last < s.length) parent.appendChild(document.createTextNode(s.slice(last)));
  }
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function fmtTime(iso) {
    const d = iso ? new Date(iso) : new Date();
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // ---- state ---------------------------------------------------------------------------
  function load() {
    try {
      return JSON.parse(localStorage.getItem(storeKey) || "{}") || {};
    } catch (_e) {
      return {};
    }
  }
  function save() {
    const data = { token: st.token, userId: st.userId, conversationId: st.cid, identity: identityKey };
    try {
      localStorage.setItem(storeKey, JSON.stringify(data));
    } catch (_e) { /* private mode */ }
  }
  // a session saved for someone else (another user signed in on this page, or signed out) is not reused
  const stored = load();
  const saved = (stored.identity || "") === identityKey ? stored : {};
  const st = {
    token: saved.token || null,
    userId: saved.userId || null,
    cid: saved.conversationId || null,
    me: null,
    ws: null,
    connected: false,
    attempt: 0,
    holdUntil: 0,
    timer: null,
    messages: new Map(), // seq -> message
    lastSeq: 0,
    pending: new Map(), // client_msg_id -> {text, el}
    drafts: new Map(), // draft_id -> {parts: [], el}
    status: null,
    conv: null,
    names: {},
    readBy: 0,
    starting: false,
    open: false,
    typingSentAt: 0,
    typingTimer: null,
    sentRead: 0,
    gapFetch: null,
    refs: 0,
    closedForGood: false,
    deltas: 0,
    connecting: false,
    replyTo: null, // the message a reply quotes
    editing: null, // the message being edited
    emojis: ["👍", "❤️", "😂", "🎉", "🙏"],
    editWindowMs: 15 * 60 * 1000,
  };

  // ---- DOM -----------------------------------------------------------------------------
  const host = el("div");
  host.id = "parley-widget";
  const root = host.attachShadow({ mode: "open" });
  const css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = base + "/static/widget.css";
  root.appendChild(css);

  const launcher = el("button", "pw-launcher", "💬");
  launcher.setAttribute("aria-label", "Open chat");
  launcher.dataset.testid = "launcher";
  const panel = el("section", "pw-panel");
  panel.hidden = true;
  panel.setAttribute("aria-label", title);

  const head = el("header", "pw-head");
  const headTitle = el("div", "pw-title", title);
  const owner = el("div", "pw-owner", "Assistant · AI");
  owner.dataset.testid = "owner";
  const close = el("button", "pw-close", "×");
  close.setAttribute("aria-label", "Close chat");
  const headText = el("div", "pw-head-text");
  headText.append(headTitle, owner);
  head.append(headText, close);

  const banner = el("div", "pw-banner");
  banner.hidden = true;
  banner.dataset.testid = "banner";
  const queueBox = el("div", "pw-queue");
  queueBox.hidden = true;
  queueBox.dataset.testid = "queue";

  const log = el("div", "pw-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  const empty = el("div", "pw-empty", "Hi! Ask us anything — our assistant answers right away, and a person is one click away.");
  log.appendChild(empty);
  const typing = el("div", "pw-typing");
  typing.hidden = true;
  typing.dataset.testid = "typing";

  // CSAT: a rating card once a person resolved the conversation, a "Rate this chat" link once the AI answered
  const csat = el("div", "pw-csat");
  csat.hidden = true;
  csat.dataset.testid = "csat";
  const csatAsk = el("button", "pw-csat-ask", "Rate this chat");
  csatAsk.type = "button";
  csatAsk.hidden = true;
  csatAsk.dataset.testid = "csat-ask";
  const csatQuestion = el("div", "pw-csat-q", "How would you rate this conversation?");
  const csatStars = el("div", "pw-csat-stars");
  csatStars.setAttribute("role", "radiogroup");
  const csatComment = el("textarea", "pw-csat-comment");
  csatComment.rows = 2;
  csatComment.placeholder = "Anything to add? (optional)";
  csatComment.setAttribute("aria-label", "Comment");
  csatComment.maxLength = 1000;
  csatComment.dataset.testid = "csat-comment";
  const csatSend = el("button", "pw-csat-send", "Send rating");
  csatSend.type = "button";
  csatSend.disabled = true;
  csatSend.dataset.testid = "csat-send";
  const csatThanks = el("div", "pw-csat-thanks");
  csatThanks.hidden = true;
  csatThanks.dataset.testid = "csat-thanks";
  csat.append(csatQuestion, csatStars, csatComment, csatSend);
  const csatState = { score: 0, rated: null, wording: null, loaded: false, open: false };
  for (let i = 1; i <= 5; i++) {
    const b = el("button", "pw-csat-star", "★");
    b.type = "button";
    b.dataset.score = String(i);
    b.dataset.testid = "csat-star";
    b.setAttribute("role", "radio");
    b.setAttribute("aria-label", i + " of 5");
    b.addEventListener("click", () => {
      csatState.score = i;
      for (const x of csatStars.children) x.classList.toggle("on", Number(x.dataset.score) <= i);
      csatSend.disabled = false;
    });
    csatStars.appendChild(b);
  }

  const actions = el("div", "pw-actions");
  const human = el("button", "pw-human", "Talk to a human");
  human.dataset.testid = "human";
  const pushBtn = el("button", "pw-push", "Notify me");
  pushBtn.dataset.testid = "push";
  pushBtn.hidden = !("serviceWorker" in navigator && "PushManager" in window && "Notification" in window);
  actions.append(human, pushBtn);

  const form = el("form", "pw-form");
  const input = el("textarea", "pw-input");
  input.rows = 1;
  input.placeholder = "Write a message…";
  input.setAttribute("aria-label", "Message");
  input.maxLength = 4000;
  const send = el("button", "pw-send", "Send");
  send.type = "submit";
  const attach = el("button", "pw-attach", "📎");
  attach.type = "button";
  attach.setAttribute("aria-label", "Attach a file");
  attach.dataset.testid = "attach";
  const fileInput = el("input");
  fileInput.type = "file";
  fileInput.hidden = true;
  fileInput.dataset.testid = "file";
  form.append(attach, fileInput, input, send);
  const toast = el("div", "pw-toast");
  toast.hidden = true;
  toast.dataset.testid = "toast";

  const replyBar = el("div", "pw-replybar");
  replyBar.hidden = true;
  replyBar.dataset.testid = "replybar";
  const replyText = el("span", "pw-replybar-text");
  const replyCancel = el("button", "pw-replybar-x", "×");
  replyCancel.type = "button";
  replyCancel.setAttribute("aria-label", "Cancel");
  replyBar.append(replyText, replyCancel);

  panel.append(head, banner, queueBox, log, typing, csat, csatThanks, csatAsk, actions, replyBar, form, toast);
  root.append(panel, launcher);

  function mount() {
    document.body.appendChild(host);
    if (st.cid) connect();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  function setOpen(v) {
    st.open = v;
    panel.hidden = !v;
    launcher.hidden = v;
    if (v) {
      connect();
      input.focus();
      markRead();
      scroll();
    }
  }
  launcher.addEventListener("click", () => setOpen(true));
  close.addEventListener("click", () => setOpen(false));

  function scroll() {
    log.scrollTop = log.scrollHeight;
  }
  function showToast(text, ms) {
    toast.textContent = String(text);
    toast.hidden = false;
    clearTimeout(showToast.t);
    showToast.t = setTimeout(() => (toast.hidden = true), ms || 5000);
  }
  function showBanner(text) {
    banner.textContent = text || "";
    banner.hidden = !text;
  }

  // ---- owner / status ------------------------------------------------------------------
  function renderOwner() {
    const c = st.conv;
    // a snoozed conversation is still its agent's: the visitor sees who they are talking to
    const status = c ? (c.status === "snoozed" ? "assigned" : c.status) : "bot";
    owner.dataset.status = status;
    queueBox.hidden = true;
    human.hidden = status === "queued" || status === "assigned";
    if (status === "queued") {
      owner.textContent = "Waiting for a person";
      const parts = [];
      if (c.queue_position) parts.push("You are #" + c.queue_position + " in the queue");
      else parts.push("You are in the queue");
      if (c.eta_seconds) parts.push("estimated wait about " + Math.max(1, Math.round(c.eta_seconds / 60)) + " min");
      queueBox.textContent = parts.join(" · ");
      queueBox.hidden = false;
    } else if (status === "assigned") {
      const name = (c.assignee && st.names[c.assignee]) || "a support agent";
      owner.textContent = "You're talking to " + name;
    } else if (status === "resolved") {
      owner.textContent = "Conversation resolved — write to reopen it";
    } else {
      owner.textContent = "Assistant · AI";
    }
    renderCsat();
  }

  // ---- CSAT ----------------------------------------------------------------------------
  // "resolved:<time>" or "ai": what a rating would rate now; a new resolution asks again.
  function csatEpisode() {
    const c = st.conv;
    if (!c) return null;
    if (c.status === "resolved") return "resolved:" + (c.resolved_at || c.updated_at || "");
    if (c.status === "bot" && [...st.messages.values()].some((m) => m.sender && m.sender.kind === "bot")) return "ai";
    return null;
  }
  function renderCsat() {
    const episode = csatEpisode();
    const rated = episode !== null && csatState.rated === episode;
    const auto = episode !== null && episode !== "ai";
    const show = episode !== null && !rated && (auto || csatState.open);
    // the card shows in the tenant's words: once they are loaded
    if (show && !csatState.loaded) loadWording();
    csat.hidden = !show || !csatState.loaded;
    csatAsk.hidden = episode !== "ai" || rated || csatState.open;
  }
  function loadWording() {
    if (csatState.wording) return;
    csatState.wording = api("GET", "/v1/csat/wording").then((w) => {
      csatQuestion.textContent = w.question;
      csatThanks.textContent = w.thanks;
    }).catch(() => { /* the built-in words stay */ }).then(() => {
      csatState.loaded = true;
      renderCsat();
    });
  }
  csatAsk.addEventListener("click", () => {
    csatState.open = true;
    renderCsat();
  });
  csatSend.addEventListener("click", async () => {
    if (!csatState.score || !st.cid) return;
    const episode = csatEpisode();
    csatSend.disabled = true;
    try {
      await api("PUT", "/v1/conversations/" + encodeURIComponent(st.cid) + "/rating",
        { score: csatState.score, comment: csatComment.value.trim() || null });
      csatState.rated = episode;
      csatState.open = false;
      csatComment.value = "";
      csatThanks.hidden = false;
      setTimeout(() => (csatThanks.hidden = true), 6000);
      renderCsat();
    } catch (e) {
      showToast("Your rating was not sent: " + e.message);
      csatSend.disabled = false;
    }
  });
  function applyConversation(c) {
    if (!c || (st.cid && c.id !== st.cid)) return;
    const prev = st.conv || {};
    st.conv = Object.assign({}, c);
    if (c.status !== "queued") {
      delete st.conv.queue_position;
      delete st.conv.eta_seconds;
    } else if (c.queue_position === undefined && prev.status === "queued") {
      st.conv.queue_position = prev.queue_position;
      st.conv.eta_seconds = prev.eta_seconds;
    }
    renderOwner();
  }

  // ---- messages ------------------------------------------------------------------------
  function renderCitations(box, cites) {
    if (!Array.isArray(cites) || !cites.length) return;
    const wrap = el("div", "pw-cites");
    wrap.appendChild(el("span", "pw-cites-label", "Sources:"));
    const seen = new Set();
    for (const c of cites) {
      const label = String((c && (c.title || c.source)) || "source");
      const key = label + "|" + (c && c.source);
      if (seen.has(key)) continue;
      seen.add(key);
      const href = c && c.source ? safeHref(c.source) : null;
      const item = href ? link(href, label) : el("span", "pw-cite", label);
      item.classList.add("pw-cite");
      item.dataset.testid = "citation";
      wrap.appendChild(item);
    }
    box.appendChild(wrap);
  }
  function messageEl(m) {
    const kind = m.kind === "system" ? "system" : (m.sender && m.sender.kind) || "system";
    const mine = st.me && m.sender && m.sender.kind === "user" && m.sender.id === st.me.id;
    const box = el("div", "pw-msg pw-" + kind + (mine ? " pw-mine" : ""));
    box.dataset.testid = "message";
    if (m.seq) box.dataset.seq = String(m.seq);
    if (m.kind === "system") {
      box.appendChild(el("div", "pw-text", m.text));
      return box;
    }
    if (!mine) {
      let who = (m.sender && m.sender.name) || (kind === "bot" ? "Assistant" : kind === "agent" ? "Agent" : "");
      if (kind === "bot") who += " · AI";
      box.appendChild(el("div", "pw-who", who));
    }
    if (m.reply_to) box.appendChild(quoteEl(m.reply_to));
    if (m.deleted) {
      box.classList.add("pw-deleted");
      const gone = el("div", "pw-text pw-gone", "This message was deleted");
      gone.dataset.testid = "deleted";
      box.appendChild(gone);
      box.appendChild(el("div", "pw-meta", fmtTime(m.created_at)));
      return box;
    }
    const body = el("div", "pw-text");
    body.dataset.testid = "text";
    richText(body, m.text);
    box.appendChild(body);
    renderCitations(box, m.citations);
    renderAttachments(box, m.attachments);
    if (m.rich) box.appendChild(richEl(m));
    box.appendChild(reactionsEl(m));
    const meta = el("div", "pw-meta", fmtTime(m.created_at) + (m.edited_at ? " · edited" : ""));
    if (m.edited_at) meta.dataset.testid = "edited";
    box.appendChild(meta);
    box.appendChild(toolsEl(m, mine));
    return box;
  }

  // ---- quotes, edits, deletes, reactions and rich messages ------------------------------
  function senderLabel(s) {
    if (!s) return "";
    if (st.me && s.kind === "user" && s.id === st.me.id) return "You";
    return s.name || (s.kind === "bot" ? "Assistant" : s.kind === "agent" ? "Agent" : "");
  }
  function quoteEl(q) {
    const box = el("div", "pw-quote");
    box.dataset.testid = "quote";
    box.appendChild(el("div", "pw-quote-who", senderLabel(q.sender)));
    box.appendChild(el("div", "pw-quote-text", q.deleted ? "Deleted message" : q.text));
    return box;
  }
  function changeable(m) {
    return !m.deleted && Date.now() - Date.parse(m.created_at) < st.editWindowMs;
  }
  function tool(label, testid, onClick) {
    const b = el("button", "pw-tool", label);
    b.type = "button";
    b.dataset.testid = testid;
    b.addEventListener("click", onClick);
    return b;
  }
  function toolsEl(m, mine) {
    const bar = el("div", "pw-tools");
    bar.appendChild(tool("Reply", "reply", () => startReply(m)));
    const picker = el("div", "pw-picker");
    picker.hidden = true;
    for (const e of st.emojis) {
      const b = tool(e, "emoji", () => {
        picker.hidden = true;
        react(m, e);
      });
      picker.appendChild(b);
    }
    bar.appendChild(tool("☺+", "react", () => (picker.hidden = !picker.hidden)));
    if (mine && changeable(m)) {
      bar.appendChild(tool("Edit", "edit", () => startEdit(m)));
      // Two clicks, no dialog: "Delete" asks "Delete for everyone?" first.
      const del = tool("Delete", "delete", () => {
        if (del.dataset.armed) {
          sendFrame({ type: "message.delete", conversation_id: st.cid, message_id: m.id, ref: ref() });
        } else {
          del.dataset.armed = "1";
          del.textContent = "Delete for everyone?";
        }
      });
      bar.appendChild(del);
    }
    bar.appendChild(picker);
    return bar;
  }
  function reactionsEl(m) {
    const row = el("div", "pw-reactions");
    row.dataset.testid = "reactions";
    for (const r of m.reactions || []) {
      const chip = tool(r.emoji + " " + r.count, "reaction", () => react(m, r.emoji));
      chip.classList.add("pw-reaction");
      if (r.mine) chip.classList.add("pw-reaction-mine");
      row.appendChild(chip);
    }
    return row;
  }
  function react(m, emoji) {
    const mine = (m.reactions || []).some((r) => r.emoji === emoji && r.mine);
    sendFrame({ type: mine ? "reaction.remove" : "reaction.add", conversation_id: st.cid, message_id: m.id,
      emoji, ref: ref() });
  }
  function richEl(m) {
    const box = el("div", "pw-rich");
    const r = m.rich || {};
    if (r.card && r.card.title) {
      const card = el("div", "pw-card");
      card.dataset.testid = "card";
      card.appendChild(el("div", "pw-card-title", r.card.title));
      if (r.card.text) card.appendChild(el("div", "pw-card-text", r.card.text));
      const href = safeHref(r.card.url);
      if (href) card.appendChild(link(href, r.card.link_label || "Open"));
      box.appendChild(card);
    }
    if (r.form && Array.isArray(r.form.fields)) {
      const f = el("form", "pw-card pw-richform");
      f.dataset.testid = "richform";
      f.appendChild(el("div", "pw-card-title", r.form.title || ""));
      const inputs = [];
      for (const fld of r.form.fields) {
        const lab = el("label", "pw-field", fld.label);
        const inp = el("input");
        inp.type = ["email", "number"].includes(fld.type) ? fld.type : "text";
        inp.required = !!fld.required;
        inp.name = fld.name;
        lab.appendChild(inp);
        f.appendChild(lab);
        inputs.push([fld, inp]);
      }
      const go = el("button", "pw-send", r.form.submit_label || "Send");
      go.type = "submit";
      f.appendChild(go);
      f.addEventListener("submit", (e) => {
        e.preventDefault();
        sendText(inputs.map(([fld, inp]) => fld.label + ": " + inp.value).join("\n"));
        go.disabled = true;
      });
      box.appendChild(f);
    }
    if (Array.isArray(r.quick_replies) && r.quick_replies.length) {
      const row = el("div", "pw-quick");
      row.dataset.testid = "quick-replies";
      for (const q of r.quick_replies) {
        const b = tool(q.label, "quick-reply", () => {
          for (const x of row.querySelectorAll("button")) x.disabled = true;
          sendText(q.value);
        });
        b.classList.add("pw-quick-btn");
        row.appendChild(b);
      }
      box.appendChild(row);
    }
    return box;
  }
  function showBar(text) {
    replyText.textContent = text;
    replyBar.hidden = false;
    input.focus();
  }
  function startReply(m) {
    st.editing = null;
    st.replyTo = m;
    showBar("Replying to " + senderLabel(m.sender) + ": " + String(m.text || "").slice(0, 80));
  }
  function startEdit(m) {
    st.replyTo = null;
    st.editing = m;
    input.value = m.text || "";
    showBar("Editing your message");
  }
  function clearBar() {
    st.replyTo = null;
    st.editing = null;
    replyBar.hidden = true;
  }
  replyCancel.addEventListener("click", () => {
    if (st.editing) input.value = "";
    clearBar();
  });
  function replaceMessage(m) {
    st.messages.set(m.seq, m);
    const old = log.querySelector('.pw-msg[data-seq="' + m.seq + '"]');
    if (old) old.replaceWith(messageEl(m));
    renderRead();
  }
  // The message, and every reply quoting it, as the server now says it is.
  function changed(cid, seq, update) {
    const old = cid === st.cid && st.messages.get(seq);
    if (!old) return;
    const m = update(old);
    replaceMessage(m);
    for (const other of st.messages.values()) {
      if (other.reply_to && other.reply_to.id === m.id) {
        replaceMessage({ ...other, reply_to: { ...other.reply_to, text: m.deleted ? "" : String(m.text || "").slice(0, 200),
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
      if (f.participant && st.me && f.participant.kind === "user" && f.participant.id === st.me.id) r.mine = f.active;
      return { ...old, reactions: list.filter((x) => x.count > 0) };
    });
  }
  // After (re)connecting: the messages' current state (edits, deletes, reactions) and read marks.
  function refreshHistory() {
    const cid = st.cid;
    if (!cid) return;
    api("GET", "/v1/conversations/" + encodeURIComponent(cid) + "/messages?after_seq=0&limit=200")
      .then((r) => {
        for (const m of r.messages || []) {
          if (st.messages.has(m.seq)) replaceMessage(m);
          else addMessage(cid, m);
        }
      })
      .catch(() => {});
    api("GET", "/v1/conversations/" + encodeURIComponent(cid) + "/reads")
      .then((r) => {
        for (const x of r.reads || []) if (x.participant.kind !== "user") st.readBy = Math.max(st.readBy, x.seq);
        renderRead();
      })
      .catch(() => {});
  }

  // ---- attachments ---------------------------------------------------------------------
  // Files are served only with the visitor's token, so they are fetched and shown as blob: URLs.
  async function authedBlob(path) {
    const r = await fetch(base + path, { headers: { Authorization: "Bearer " + st.token } });
    if (!r.ok) throw new Error("download failed (" + r.status + ")");
    return URL.createObjectURL(await r.blob());
  }
  function attachmentPath(a) {
    return "/v1/attachments/" + encodeURIComponent(String(a.id));
  }
  function fmtSize(n) {
    n = Number(n) || 0;
    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB";
  }
  function download(a) {
    authedBlob(attachmentPath(a))
      .then((u) => {
        const link = document.createElement("a");
        link.href = u;
        link.download = String(a.name || "file");
        root.appendChild(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(u), 60000);
      })
      .catch((e) => showToast(e.message));
  }
  function renderAttachments(box, list) {
    if (!Array.isArray(list) || !list.length) return;
    const wrap = el("div", "pw-files");
    for (const a of list) {
      if (!a || typeof a.id !== "string") continue;
      if (a.thumbnail_url) {
        const img = el("img", "pw-thumb");
        img.alt = String(a.name || "image");
        img.title = String(a.name || "image");
        img.dataset.testid = "thumb";
        authedBlob(attachmentPath(a) + "/thumbnail").then((u) => (img.src = u)).catch(() => {});
        img.addEventListener("click", () => download(a));
        wrap.appendChild(img);
      } else {
        const b = el("button", "pw-file", "📄 " + String(a.name || "file") + " · " + fmtSize(a.size));
        b.type = "button";
        b.dataset.testid = "file-link";
        b.addEventListener("click", () => download(a));
        wrap.appendChild(b);
      }
    }
    box.appendChild(wrap);
  }
  async function uploadAndSend(file) {
    const cmid = uuid();
    const box = el("div", "pw-msg pw-user pw-mine pw-pending");
    box.dataset.testid = "pending";
    box.appendChild(el("div", "pw-text", "📎 " + String(file.name || "file") + " — uploading…"));
    log.appendChild(box);
    empty.hidden = true;
    scroll();
    try {
      const fd = new FormData();
      fd.append("file", file, file.name || "pasted-image.png");
      const r = await fetch(base + "/v1/conversations/" + encodeURIComponent(st.cid) + "/attachments", {
        method: "POST", headers: { Authorization: "Bearer " + st.token }, body: fd });
      const data = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error((data.error && data.error.detail) || "upload failed (" + r.status + ")");
      const ids = [data.attachment.id];
      st.pending.set(cmid, { text: "", attachments: ids, el: box });
      sendFrame({ type: "send", conversation_id: st.cid, client_msg_id: cmid, text: "", attachments: ids, ref: ref() });
    } catch (e) {
      box.classList.add("pw-failed");
      box.appendChild(el("div", "pw-meta", "Not sent: " + e.message));
    }
  }
  function attachFiles(files) {
    for (const file of files) {
      if (!file) continue;
      const go = () => uploadAndSend(file);
      if (st.cid) {
        ensureSession().then(go).catch(() => showToast("Could not reach the chat; try again."));
      } else if (st.connected) {
        afterStart.push(go);
        startConversation();
      } else {
        connect();
        showToast("Connecting… attach the file again in a moment.");
      }
    }
  }
  function insertBySeq(node, seq) {
    const nodes = log.querySelectorAll(".pw-msg[data-seq]");
    for (const n of nodes) {
      if (Number(n.dataset.seq) > seq) {
        log.insertBefore(node, n);
        return;
      }
    }
    // after the last seq'd message but before pending/draft bubbles
    const firstLoose = log.querySelector(".pw-msg:not([data-seq])");
    if (firstLoose) log.insertBefore(node, firstLoose);
    else log.appendChild(node);
  }
  function learnNames(m) {
    if (m.sender && m.sender.id && m.sender.name && m.sender.kind === "agent") st.names[m.sender.id] = m.sender.name;
    if (m.kind === "system" && st.conv && st.conv.assignee) {
      const j = /^(.+) joined the conversation$/.exec(m.text || "");
      if (j && !st.names[st.conv.assignee]) st.names[st.conv.assignee] = j[1];
    }
  }
  function addMessage(cid, m) {
    if (cid !== st.cid || !m || typeof m.seq !== "number") return;
    if (st.messages.has(m.seq)) return; // dedupe by seq
    st.messages.set(m.seq, m);
    empty.hidden = true;
    if (m.client_msg_id && st.pending.has(m.client_msg_id)) {
      st.pending.get(m.client_msg_id).el.remove();
      st.pending.delete(m.client_msg_id);
    }
    if (m.draft_id && st.drafts.has(m.draft_id)) {
      st.drafts.get(m.draft_id).el.remove();
      st.drafts.delete(m.draft_id);
    }
    learnNames(m);
    insertBySeq(messageEl(m), m.seq);
    const gap = m.seq > st.lastSeq + 1;
    const from = st.lastSeq;
    if (m.seq > st.lastSeq) st.lastSeq = m.seq;
    if (gap) fillGap(from);
    if (m.sender && m.sender.kind !== "user") typingOff(m.sender.id);
    renderOwner();
    renderRead();
    scroll();
    markRead();
  }
  // Users never receive notes, so a jump in seq is usually one; the history tells for sure.
  function fillGap(from) {
    if (st.gapFetch) return;
    const cid = st.cid;
    st.gapFetch = api("GET", "/v1/conversations/" + encodeURIComponent(cid) + "/messages?after_seq=" + from + "&limit=200")
      .then((r) => {
        for (const m of r.messages || []) addMessage(cid, m);
      })
      .catch(() => {})
      .finally(() => (st.gapFetch = null));
  }
  function onDelta(f) {
    if (f.conversation_id !== st.cid) return;
    st.deltas += 1;
    let d = st.drafts.get(f.draft_id);
    if (!d) {
      const box = el("div", "pw-msg pw-bot pw-streaming");
      box.dataset.testid = "draft";
      box.dataset.draft = f.draft_id;
      box.appendChild(el("div", "pw-who", "Assistant · AI"));
      const body = el("div", "pw-text");
      box.appendChild(body);
      d = { parts: [], el: box, body };
      st.drafts.set(f.draft_id, d);
      log.appendChild(box);
      empty.hidden = true;
    }
    d.parts[f.index] = String(f.delta || "");
    let text = "";
    for (let i = 0; i < d.parts.length; i++) {
      if (d.parts[i] === undefined) break;
      text += d.parts[i];
    }
    d.body.textContent = text;
    typing.hidden = true;
    scroll();
  }
  function renderRead() {
    for (const n of log.querySelectorAll(".pw-read")) n.remove();
    if (!st.readBy) return;
    const mine = log.querySelectorAll(".pw-msg.pw-mine[data-seq]");
    let target = null;
    for (const n of mine) if (Number(n.dataset.seq) <= st.readBy) target = n;
    if (target) {
      const r = el("div", "pw-read", "Seen");
      r.dataset.testid = "read";
      target.appendChild(r);
    }
  }
  function markRead() {
    if (!st.open || !st.connected || !st.cid || document.visibilityState === "hidden") return;
    let top = 0;
    for (const [seq, m] of st.messages) if (!(m.sender && st.me && m.sender.id === st.me.id) && seq > top) top = seq;
    if (top > st.sentRead) {
      st.sentRead = top;
      sendFrame({ type: "read", conversation_id: st.cid, seq: top });
    }
  }
  document.addEventListener("visibilitychange", markRead);

  const typers = new Map();
  function typingOn(p) {
    if (!p || (st.me && p.id === st.me.id)) return;
    clearTimeout(typers.get(p.id));
    typers.set(p.id, setTimeout(() => typingOff(p.id), 6000));
    const who = p.kind === "bot" ? "The assistant" : p.name || "Someone";
    typing.textContent = who + " is typing…";
    typing.hidden = false;
  }
  function typingOff(id) {
    clearTimeout(typers.get(id));
    typers.delete(id);
    if (!typers.size) typing.hidden = true;
  }

  // ---- REST ----------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (st.token) headers.Authorization = "Bearer " + st.token;
    const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
    if (!r.ok) {
      const err = new Error((data.error && data.error.detail) || r.statusText);
      err.code = data.error && data.error.code;
      err.status = r.status;
      throw err;
    }
    return data;
  }
  // One anonymous session per visitor: concurrent callers share the request in flight.
  let sessionRequest = null;
  function ensureSession() {
    if (st.token) return Promise.resolve();
    if (!sessionRequest) {
      sessionRequest = api("POST", "/v1/widget/session", Object.assign({ widget_key: widgetKey }, identity))
        .then((r) => {
          st.token = r.token;
          st.userId = r.user_id;
          save();
        })
        .finally(() => (sessionRequest = null));
    }
    return sessionRequest;
  }
  function forgetSession() {
    st.token = null;
    st.userId = null;
    st.cid = null;
    st.conv = null;
    save();
  }

  // ---- socket --------------------------------------------------------------------------
  function sendFrame(f) {
    if (st.ws && st.connected && st.ws.readyState === 1) {
      st.ws.send(JSON.stringify(f));
      return true;
    }
    return false;
  }
  function ref() {
    st.refs += 1;
    return "w" + st.refs;
  }
  function connect() {
    if (st.ws || st.timer || st.connecting || st.closedForGood) return;
    const wait = st.holdUntil - Date.now();
    if (wait > 0) {
      st.timer = setTimeout(() => {
        st.timer = null;
        connect();
      }, wait);
      return;
    }
    st.connecting = true;
    ensureSession()
      .then(() => {
        st.connecting = false;
        open();
      })
      .catch(() => {
        st.connecting = false;
        scheduleReconnect();
      });
  }
  function open() {
    if (st.ws) return;
    const ws = new WebSocket(wsUrl);
    st.ws = ws;
    let fatal = null;
    ws.onopen = () => {
      const resume = {};
      if (st.cid) resume[st.cid] = st.lastSeq;
      ws.send(JSON.stringify({ type: "hello", token: st.token, resume, ref: "hello" }));
    };
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (_e) {
        return;
      }
      if (f.type === "error" && f.fatal) fatal = f;
      if (f.type === "bye") fatal = fatal || f;
      onFrame(f);
    };
    ws.onclose = () => {
      if (st.ws !== ws) return;
      st.ws = null;
      st.connected = false;
      const code = fatal && fatal.code;
      if (code === "token_expired" || code === "token_invalid" || code === "auth_required") {
        forgetSession(); // the visitor's anonymous session ended; start a fresh one
      }
      if (code === "forbidden") {
        // This page's origin is not allowed for the tenant: retrying cannot help.
        st.closedForGood = true;
        showBanner("Chat is not available on this site.");
        return;
      }
      showBanner("Connection lost — reconnecting…");
      scheduleReconnect(fatal && fatal.retry_after_ms);
    };
  }
  function scheduleReconnect(minMs) {
    if (st.timer) return;
    st.attempt += 1;
    const backoff = Math.min(15000, 500 * Math.pow(2, Math.min(st.attempt - 1, 5)));
    const delay = Math.max(minMs || 0, backoff * (0.5 + Math.random() * 0.5), st.holdUntil - Date.now());
    st.timer = setTimeout(() => {
      st.timer = null;
      connect();
    }, delay);
  }
  function onWelcome(f) {
    st.me = f.me;
    if (f.limits && Array.isArray(f.limits.reaction_emojis) && f.limits.reaction_emojis.length) {
      st.emojis = f.limits.reaction_emojis;
    }
    if (f.limits && typeof f.limits.edit_window_s === "number") st.editWindowMs = f.limits.edit_window_s * 1000;
    refreshHistory();
    st.connected = true;
    st.attempt = 0;
    showBanner("");
    // Refresh the status we may have missed while away (queue, agent, resolved).
    if (st.cid) {
      api("GET", "/v1/conversations?limit=50")
        .then((r) => {
          const c = (r.conversations || []).find((x) => x.id === st.cid);
          if (c) applyConversation(c);
        })
        .catch(() => {});
    }
    flushPending();
    markRead();
  }
  function flushPending() {
    if (!st.connected || !st.pending.size) return;
    if (!st.cid) {
      startConversation();
      return;
    }
    for (const [cmid, p] of st.pending) {
      sendFrame({ type: "send", conversation_id: st.cid, client_msg_id: cmid, text: p.text, ref: ref(),
        ...(p.attachments ? { attachments: p.attachments } : {}), ...(p.replyTo ? { reply_to: p.replyTo } : {}) });
    }
  }
  function startConversation() {
    if (st.starting || !st.connected) return;
    st.starting = true;
    sendFrame({ type: "conversation.start", ref: "start" });
  }
  const afterStart = [];
  function onFrame(f) {
    switch (f.type) {
      case "welcome":
        onWelcome(f);
        break;
      case "conversation":
        if (f.ref === "start" || !st.cid) {
          st.starting = false;
          st.cid = f.conversation.id;
          st.messages.clear();
          st.lastSeq = 0;
          save();
        }
        applyConversation(f.conversation);
        flushPending();
        while (afterStart.length) afterStart.shift()();
        break;
      case "conversation.updated":
        applyConversation(f.conversation);
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
      case "ack": {
        const p = st.pending.get(f.client_msg_id);
        if (p) p.el.classList.remove("pw-pending");
        break;
      }
      case "typing":
        if (f.conversation_id === st.cid) {
          if (f.active) typingOn(f.participant);
          else typingOff(f.participant && f.participant.id);
        }
        break;
      case "read":
        if (f.conversation_id === st.cid && f.participant && f.participant.kind !== "user") {
          st.readBy = Math.max(st.readBy, Number(f.seq) || 0);
          renderRead();
        }
        break;
      case "notification":
        if (f.notification) showToast((f.notification.title || "") + (f.notification.body ? " — " + f.notification.body : ""));
        break;
      case "error":
        onError(f);
        break;
      default:
        break;
    }
  }
  function onError(f) {
    if (f.fatal) return;
    if (f.code === "resync_required" || f.code === "invalid_cursor") {
      // Our cursor cannot be served: reload the conversation from its history.
      st.messages.clear();
      st.lastSeq = 0;
      for (const n of log.querySelectorAll(".pw-msg[data-seq]")) n.remove();
      if (st.cid) fillGap(0);
      return;
    }
    if (f.ref === "start") st.starting = false;
    const p = f.client_msg_id && st.pending.get(f.client_msg_id);
    if (f.code === "rate_limited" && p) {
      setTimeout(flushPending, f.retry_after_ms || 1000);
      return;
    }
    if (p) {
      p.el.classList.add("pw-failed");
      p.el.appendChild(el("div", "pw-meta", "Not sent: " + (f.detail || f.code)));
      st.pending.delete(f.client_msg_id);
    } else {
      showToast(f.detail || f.code);
    }
  }

  // ---- user actions --------------------------------------------------------------------
  function submit() {
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    if (st.editing) {
      const m = st.editing;
      clearBar();
      if (text !== m.text) sendFrame({ type: "message.edit", conversation_id: st.cid, message_id: m.id, text, ref: ref() });
      return;
    }
    sendText(text);
  }
  function sendText(text) {
    const replyTo = st.replyTo ? st.replyTo.id : null;
    clearBar();
    const cmid = uuid();
    const box = el("div", "pw-msg pw-user pw-mine pw-pending");
    box.dataset.testid = "pending";
    const body = el("div", "pw-text");
    richText(body, text);
    box.appendChild(body);
    log.appendChild(box);
    empty.hidden = true;
    st.pending.set(cmid, { text, el: box, replyTo });
    scroll();
    stopTyping();
    if (!st.connected) {
      connect();
      return;
    }
    if (!st.cid) startConversation();
    else sendFrame({ type: "send", conversation_id: st.cid, client_msg_id: cmid, text, ref: ref(),
      ...(replyTo ? { reply_to: replyTo } : {}) });
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      submit();
    }
  });
  function stopTyping() {
    clearTimeout(st.typingTimer);
    if (st.typingSentAt && st.cid) sendFrame({ type: "typing", conversation_id: st.cid, active: false });
    st.typingSentAt = 0;
  }
  input.addEventListener("input", () => {
    if (!st.cid || !st.connected) return;
    const now = Date.now();
    if (now - st.typingSentAt > 3000) {
      st.typingSentAt = now;
      sendFrame({ type: "typing", conversation_id: st.cid, active: true });
    }
    clearTimeout(st.typingTimer);
    st.typingTimer = setTimeout(stopTyping, 4000);
  });
  attach.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    attachFiles(Array.from(fileInput.files || []));
    fileInput.value = "";
  });
  input.addEventListener("paste", (e) => {
    const files = Array.from((e.clipboardData && e.clipboardData.files) || []);
    if (!files.length) return; // plain text pastes as usual
    e.preventDefault();
    attachFiles(files);
  });
  panel.addEventListener("dragover", (e) => {
    if (e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files")) e.preventDefault();
  });
  panel.addEventListener("drop", (e) => {
    const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []);
    if (!files.length) return;
    e.preventDefault();
    attachFiles(files);
  });
  human.addEventListener("click", () => {
    const go = () => sendFrame({ type: "handoff.request", conversation_id: st.cid, reason: "user_request", ref: ref() });
    if (st.cid && st.connected) {
      go();
    } else {
      afterStart.push(go);
      if (st.connected) startConversation();
      else connect();
    }
    human.disabled = true;
    setTimeout(() => (human.disabled = false), 2000);
  });

  // ---- Web Push ------------------------------------------------------------------------
  function b64ToBytes(s) {
    const pad = "=".repeat((4 - (s.length % 4)) % 4);
    const raw = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }
  async function enablePush() {
    await ensureSession();
    const perm = await Notification.requestPermission();
    if (perm !== "granted") throw new Error("notifications are blocked in this browser");
    const reg = await navigator.serviceWorker.register(base + "/sw.js", { scope: "/" });
    await navigator.serviceWorker.ready;
    const key = await api("GET", "/v1/push/vapid-public-key?widget_key=" + encodeURIComponent(widgetKey));
    const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64ToBytes(key.public_key) });
    await api("POST", "/v1/devices", { platform: "webpush", subscription: sub.toJSON() });
  }
  pushBtn.addEventListener("click", () => {
    pushBtn.disabled = true;
    enablePush()
      .then(() => {
        pushBtn.textContent = "Notifications on";
        showToast("We'll notify you when someone replies.");
      })
      .catch((e) => {
        pushBtn.disabled = false;
        showToast("Could not turn on notifications: " + (e && e.message ? e.message : e));
      });
  });

  // ---- debug / test hooks ---------------------------------------------------------------
  window.__parley = {
    /** Cut the socket as a network failure would; hold reconnection for holdMs. */
    drop(holdMs) {
      st.holdUntil = Date.now() + (holdMs || 0);
      if (st.ws) st.ws.close(4000, "debug drop");
    },
    seqs() {
      return Array.from(log.querySelectorAll(".pw-msg[data-seq]"), (n) => Number(n.dataset.seq));
    },
    state() {
      return { connected: st.connected, conversationId: st.cid, lastSeq: st.lastSeq, status: st.conv && st.conv.status,
        pending: st.pending.size, token: st.token, deltas: st.deltas };
    },
    open() {
      setOpen(true);
    },
  };
})();
