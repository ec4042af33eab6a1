// Parley admin pages: live dashboard, knowledge bases, bots, push rules, agents and teams. The admin key is
// asked once and kept in sessionStorage (this tab only).
import { ApiError, api, clear, el, richText } from "/static/safe.js";

const $ = (id) => document.getElementById(id);
const KEY = "parley:admin-key";
let key = sessionStorage.getItem(KEY);
let kbId = null;
const timers = [];

function toast(text) {
  const t = $("toast");
  t.textContent = String(text);
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

async function call(method, path, body) {
  try {
    return await api(key, method, path, body);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      forget("That admin key was not accepted.");
    }
    throw e;
  }
}

function forget(msg) {
  sessionStorage.removeItem(KEY);
  key = null;
  for (const t of timers.splice(0)) clearInterval(t);
  $("app").hidden = true;
  $("forget").hidden = true;
  $("gate").hidden = false;
  $("gate-error").textContent = msg || "";
}

$("gate-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const candidate = $("key").value.trim();
  try {
    await api(candidate, "GET", "/v1/knowledge-bases");
  } catch (err) {
    $("gate-error").textContent = err.status === 401 || err.status === 403 ? "That admin key was not accepted." : err.message;
    return;
  }
  key = candidate;
  sessionStorage.setItem(KEY, key);
  $("key").value = "";
  boot();
});
$("forget").addEventListener("click", () => forget());

// ---- tabs --------------------------------------------------------------------------------
for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => showTab(b.dataset.tab));
}
function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll("[data-page]")) p.hidden = p.dataset.page !== name;
  if (name === "knowledge") loadKbs();
  if (name === "bots") loadBots();
  if (name === "push") loadRules();
  if (name === "agents") loadAgents();
  if (name === "teams") loadTeams();
  location.hash = name;
}

// ---- dashboard -----------------------------------------------------------------------------
const history = []; // [{t, connections, answers}]
let pushTotals = { sent: 0, suppressed: 0, byReason: {} };

function bars(node, entries, cls) {
  clear(node);
  const max = Math.max(1, ...entries.map(([, v]) => v));
  if (!entries.length) node.appendChild(el("div", "muted", "Nothing yet."));
  for (const [label, value] of entries) {
    const row = el("div", "bar");
    row.appendChild(el("span", "", label));
    const track = el("div", "track");
    const fill = el("div", "fill" + (cls ? " " + cls : ""));
    fill.style.width = Math.round((100 * value) / max) + "%";
    track.appendChild(fill);
    row.appendChild(track);
    row.appendChild(el("span", "", String(value)));
    node.appendChild(row);
  }
}

function spark() {
  const c = $("spark");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const pts = history.slice(-60);
  if (pts.length < 2) return;
  const max = Math.max(1, ...pts.map((p) => p.connections));
  ctx.strokeStyle = "#2f5bea";
  ctx.lineWidth = 2;
  ctx.beginPath();
  pts.forEach((p, i) => {
    const x = (i / (pts.length - 1)) * (c.width - 4) + 2;
    const y = c.height - 4 - (p.connections / max) * (c.height - 8);
    if (i) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
  });
  ctx.stroke();
}

async function pollMetrics() {
  // This tenant's figures only; /metrics is the operator's and holds no tenant data.
  let stats;
  try {
    stats = await call("GET", "/v1/admin/stats");
  } catch (_e) {
    return;
  }
  const connections = stats.connections || 0;
  const answers = stats.bot_answers || 0;
  const handoffs = Object.entries(stats.handoffs || {});
  const handoffTotal = handoffs.reduce((a, [, n]) => a + n, 0);
  const now = Date.now();
  history.push({ t: now, connections, answers });
  while (history.length > 200) history.shift();
  $("k-conn").textContent = String(connections);
  $("k-answers").textContent = String(answers);
  const old = history.find((h) => now - h.t <= 60000) || history[0];
  const minutes = Math.max((now - old.t) / 60000, 1 / 60);
  $("k-answer-rate").textContent = history.length > 1 ? "per minute: " + ((answers - old.answers) / minutes).toFixed(1) : "per minute: –";
  $("k-handoffs").textContent = String(handoffTotal);
  $("k-handoff-rate").textContent = answers ? "per AI answer: " + ((100 * handoffTotal) / answers).toFixed(0) + "%" : "per AI answer: –";
  bars($("handoff-bars"), handoffs.sort((a, b) => b[1] - a[1]));
  $("k-push").textContent = pushTotals.sent + " / " + pushTotals.suppressed;
  bars($("suppress-bars"), Object.entries(pushTotals.byReason).sort((a, b) => b[1] - a[1]), "amber");
  $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + " · polling every 3 s";
  spark();
}

function csatLine(f) {
  if (!f.ratings) return "no ratings yet";
  return Math.round(100 * f.satisfied) + "% satisfied · " + f.average.toFixed(2) + " / 5 · " + f.ratings + " ratings";
}

async function pollCsat() {
  let s;
  try {
    s = await call("GET", "/v1/admin/csat?days=30");
  } catch (_e) {
    return;
  }
  for (const kind of ["ai", "human"]) {
    $("csat-" + kind).textContent = csatLine(s[kind]);
    bars($("csat-" + kind + "-bars"), ["5", "4", "3", "2", "1"].map((k) => [k + " ★", s[kind].distribution[k] || 0]));
  }
  bars($("csat-agents"), s.by_agent.map((a) => [a.name + " (" + a.average.toFixed(1) + " ★)", a.ratings]));
  const list = clear($("csat-recent"));
  for (const r of s.recent.filter((x) => x.comment).slice(0, 8)) {
    const li = el("li", "", r.score + " ★ · " + (r.resolver_kind === "ai" ? "AI" : "human") + " · " + r.comment);
    li.dataset.testid = "csat-comment";
    list.appendChild(li);
  }
  if (!list.children.length) list.appendChild(el("li", "muted", "No comments yet."));
}

async function pollPushTotals() {
  try {
    const { rules } = await call("GET", "/v1/push/rules");
    const totals = { sent: 0, suppressed: 0, byReason: {} };
    const stats = await Promise.all(rules.map((r) => call("GET", `/v1/push/rules/${encodeURIComponent(r.id)}/stats`)));
    for (const s of stats) {
      totals.sent += s.sent || 0;
      for (const [reason, n] of Object.entries(s.suppressed || {})) {
        totals.suppressed += n;
        totals.byReason[reason] = (totals.byReason[reason] || 0) + n;
      }
    }
    pushTotals = totals;
  } catch (_e) { /* keep the last figures */ }
}

// ---- knowledge -----------------------------------------------------------------------------
async function loadKbs() {
  const { knowledge_bases: kbs } = await call("GET", "/v1/knowledge-bases");
  const sel = clear($("kb-select"));
  for (const k of kbs) {
    const o = el("option", "", k.name);
    o.value = k.id;
    sel.appendChild(o);
  }
  if (kbs.length && !kbs.some((k) => k.id === kbId)) kbId = kbs[0].id;
  if (kbId) sel.value = kbId;
  await loadDocs();
}
$("kb-select").addEventListener("change", () => {
  kbId = $("kb-select").value;
  clear($("hits"));
  loadDocs();
});
$("kb-create").addEventListener("click", async () => {
  const name = $("kb-name").value.trim();
  if (!name) return;
  try {
    const kb = await call("POST", "/v1/knowledge-bases", { name });
    kbId = kb.id;
    $("kb-name").value = "";
    await loadKbs();
  } catch (e) {
    toast(e.message);
  }
});

let docsTimer = null;
async function loadDocs() {
  clearTimeout(docsTimer);
  const body = clear($("docs"));
  if (!kbId) return;
  const { documents } = await call("GET", `/v1/knowledge-bases/${encodeURIComponent(kbId)}/documents`);
  let busy = false;
  for (const d of documents) {
    const tr = el("tr");
    tr.dataset.testid = "doc";
    tr.appendChild(el("td", "wrap", d.title));
    tr.appendChild(el("td", "wrap", d.source));
    const st = el("td");
    st.appendChild(el("span", "pill " + d.status, d.status));
    if (d.error) st.appendChild(el("div", "error", d.error));
    tr.appendChild(st);
    const pr = el("td");
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = d.status === "ready" ? 1 : d.progress || 0;
    pr.appendChild(bar);
    tr.appendChild(pr);
    tr.appendChild(el("td", "", String(d.chunk_count ?? "")));
    const del = el("button", "ghost danger", "Delete");
    del.addEventListener("click", async () => {
      if (!confirm("Delete “" + d.title + "”?")) return;
      await call("DELETE", `/v1/knowledge-bases/${encodeURIComponent(kbId)}/documents/${encodeURIComponent(d.id)}`);
      loadDocs();
    });
    const td = el("td");
    td.appendChild(del);
    tr.appendChild(td);
    body.appendChild(tr);
    if (d.status === "queued" || d.status === "processing") busy = true;
  }
  if (!documents.length) {
    const tr = el("tr");
    const td = el("td", "muted", "No documents yet.");
    td.colSpan = 6;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  if (busy) docsTimer = setTimeout(loadDocs, 1500);
}

async function addDoc(body) {
  if (!kbId) return toast("Create a knowledge base first.");
  try {
    await call("POST", `/v1/knowledge-bases/${encodeURIComponent(kbId)}/documents`, body);
    await loadDocs();
    return true;
  } catch (e) {
    toast("Not added: " + e.message);
    return false;
  }
}
$("url-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (await addDoc({ url: $("url").value.trim() })) $("url").value = "";
});
$("text-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (await addDoc({ title: $("text-title").value.trim(), text: $("text-body").value })) {
    $("text-title").value = "";
    $("text-body").value = "";
  }
});
$("faq-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const faq = [];
  for (const block of $("faq-body").value.split(/\n\s*\n/)) {
    const lines = block.trim().split("\n");
    if (lines.length >= 2) faq.push({ question: lines[0].trim(), answer: lines.slice(1).join("\n").trim() });
  }
  if (!faq.length) return toast("Write at least one question line followed by its answer.");
  if (await addDoc({ title: $("faq-title").value.trim() || "FAQ", faq })) $("faq-body").value = "";
});

// Uploads go through XMLHttpRequest for its upload progress events.
function uploadOne(file) {
  const row = el("div", "");
  row.appendChild(el("div", "", file.name));
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  row.appendChild(bar);
  const note = el("div", "muted", "");
  row.appendChild(note);
  $("uploads").appendChild(row);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/knowledge-bases/${encodeURIComponent(kbId)}/documents`);
    xhr.setRequestHeader("Authorization", "Bearer " + key);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) {
        bar.value = ev.loaded / ev.total;
        note.textContent = Math.round((100 * ev.loaded) / ev.total) + "%";
      }
    };
    xhr.onload = () => {
      if (xhr.status === 202) {
        bar.value = 1;
        note.textContent = "uploaded; processing…";
      } else {
        let detail = xhr.statusText;
        try {
          detail = JSON.parse(xhr.responseText).error.detail;
        } catch (_e) { /* keep status text */ }
        note.textContent = "failed: " + detail;
        note.className = "error";
      }
      resolve();
    };
    xhr.onerror = () => {
      note.textContent = "failed: network error";
      note.className = "error";
      resolve();
    };
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}
$("upload").addEventListener("click", async () => {
  if (!kbId) return toast("Create a knowledge base first.");
  const files = [...$("file").files];
  if (!files.length) return toast("Choose files first.");
  clear($("uploads"));
  await Promise.all(files.map(uploadOne));
  $("file").value = "";
  loadDocs();
});

$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = $("search-q").value.trim();
  if (!q || !kbId) return;
  const box = clear($("hits"));
  try {
    const { hits } = await call("GET", `/v1/knowledge-bases/${encodeURIComponent(kbId)}/search?k=5&q=${encodeURIComponent(q)}`);
    if (!hits.length) box.appendChild(el("div", "muted", "No chunks matched."));
    for (const h of hits) {
      const d = el("div", "hit");
      d.dataset.testid = "hit";
      d.appendChild(el("span", "score", h.score.toFixed(3)));
      d.appendChild(el("strong", "", h.title + (h.heading_path && h.heading_path.length ? " › " + h.heading_path.join(" › ") : "")));
      d.appendChild(richText(el("div", ""), h.text));
      box.appendChild(d);
    }
  } catch (err) {
    box.appendChild(el("div", "error", err.message));
  }
});

// ---- bots ----------------------------------------------------------------------------------
async function loadBots() {
  const [{ bots }, { knowledge_bases: kbs }] = await Promise.all([call("GET", "/v1/bots"), call("GET", "/v1/knowledge-bases")]);
  const box = clear($("bots"));
  for (const b of bots) {
    const card = el("div", "card");
    card.dataset.testid = "bot";
    card.appendChild(el("h3", "", b.name + (b.is_default ? " (default)" : "")));
    const name = el("input");
    name.value = b.name;
    const kb = el("select");
    kb.appendChild(Object.assign(el("option", "", "— none —"), { value: "" }));
    for (const k of kbs) kb.appendChild(Object.assign(el("option", "", k.name), { value: k.id }));
    kb.value = b.knowledge_base_id || "";
    const persona = el("textarea");
    persona.rows = 3;
    persona.value = b.persona || "";
    const handoff = el("textarea");
    handoff.rows = 8;
    handoff.value = JSON.stringify(b.handoff || {}, null, 2);
    const isDefault = el("input");
    isDefault.type = "checkbox";
    isDefault.checked = !!b.is_default;
    const fields = [["Name", name], ["Knowledge base", kb], ["Persona", persona], ["Handoff settings (JSON)", handoff]];
    for (const [label, input] of fields) {
      const l = el("label", "", label);
      l.appendChild(input);
      card.appendChild(l);
    }
    const dl = el("label", "", "Default bot for new conversations");
    dl.appendChild(isDefault);
    card.appendChild(dl);
    const err = el("p", "error");
    const save = el("button", "primary", "Save");
    save.addEventListener("click", async () => {
      err.textContent = "";
      let ho;
      try {
        ho = JSON.parse(handoff.value || "{}");
      } catch (e) {
        err.textContent = "Handoff settings are not valid JSON: " + e.message;
        return;
      }
      const body = { name: name.value, persona: persona.value, handoff: ho, is_default: isDefault.checked };
      if (kb.value) body.knowledge_base_id = kb.value;
      try {
        await call("PATCH", `/v1/bots/${encodeURIComponent(b.id)}`, body);
        toast("Saved " + name.value);
        loadBots();
      } catch (e) {
        err.textContent = e.message;
      }
    });
    card.appendChild(save);
    card.appendChild(err);
    box.appendChild(card);
  }
}
$("bot-create").addEventListener("click", async () => {
  const name = $("bot-name").value.trim();
  if (!name) return;
  try {
    await call("POST", "/v1/bots", { name });
    $("bot-name").value = "";
    loadBots();
  } catch (e) {
    toast(e.message);
  }
});

// ---- push ----------------------------------------------------------------------------------
async function loadRules() {
  const { rules } = await call("GET", "/v1/push/rules");
  const body = clear($("rules"));
  const stats = await Promise.all(rules.map((r) => call("GET", `/v1/push/rules/${encodeURIComponent(r.id)}/stats`).catch(() => ({}))));
  rules.forEach((r, i) => {
    const s = stats[i] || {};
    const suppressed = Object.values(s.suppressed || {}).reduce((a, n) => a + n, 0);
    const tr = el("tr");
    tr.dataset.testid = "rule";
    for (const v of [r.name, r.trigger_event, r.category, r.enabled ? "yes" : "no", s.triggered ?? "", s.sent ?? "", suppressed, s.opened ?? ""]) {
      tr.appendChild(el("td", "wrap", String(v)));
    }
    const td = el("td");
    const view = el("button", "ghost", "Stats");
    view.addEventListener("click", () => showRule(r, s));
    const toggle = el("button", "ghost", r.enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", async () => {
      await call("PATCH", `/v1/push/rules/${encodeURIComponent(r.id)}`, { enabled: !r.enabled });
      loadRules();
    });
    td.append(view, toggle);
    tr.appendChild(td);
    body.appendChild(tr);
  });
  if (!rules.length) {
    const tr = el("tr");
    const td = el("td", "muted", "No rules yet.");
    td.colSpan = 9;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  loadNotifications();
}

function showRule(r, s) {
  const box = clear($("rule-detail"));
  box.className = "";
  box.appendChild(el("h3", "", r.name));
  box.appendChild(el("pre", "json", JSON.stringify({ rule: r, stats: s }, null, 2)));
}

$("rule-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("rule-error").textContent = "";
  let template;
  let conditions = null;
  try {
    template = JSON.parse($("r-template").value);
    if ($("r-conditions").value.trim()) conditions = JSON.parse($("r-conditions").value);
  } catch (err) {
    $("rule-error").textContent = "Not valid JSON: " + err.message;
    return;
  }
  const wait = Number($("r-wait").value) || 0;
  const body = { name: $("r-name").value, trigger_event: $("r-trigger").value, category: $("r-category").value, template };
  if (conditions) body.conditions = conditions;
  if (wait > 0) body.wait_s = wait;
  try {
    await call("POST", "/v1/push/rules", body);
    $("r-name").value = "";
    loadRules();
  } catch (err) {
    $("rule-error").textContent = err.message;
  }
});

async function loadNotifications() {
  const user = $("n-user").value.trim();
  const q = user ? "?limit=50&user_id=" + encodeURIComponent(user) : "?limit=50";
  const { notifications } = await call("GET", "/v1/push/notifications" + q);
  const body = clear($("notifications"));
  for (const n of notifications) {
    const tr = el("tr");
    tr.appendChild(el("td", "", n.created_at ? new Date(n.created_at).toLocaleString() : ""));
    tr.appendChild(el("td", "wrap", n.user_id));
    tr.appendChild(el("td", "wrap", n.title));
    const dec = el("td");
    dec.appendChild(el("span", "pill " + (n.decision || ""), n.decision || ""));
    tr.appendChild(dec);
    const stt = el("td");
    stt.appendChild(el("span", "pill " + (n.status || ""), n.status || ""));
    tr.appendChild(stt);
    tr.appendChild(el("td", "wrap", JSON.stringify(n.reasons)));
    body.appendChild(tr);
  }
  if (!notifications.length) {
    const tr = el("tr");
    const td = el("td", "muted", "No notifications yet.");
    td.colSpan = 6;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}
$("n-refresh").addEventListener("click", loadNotifications);

// ---- agents and teams ----------------------------------------------------------------------
const apiPath = (...parts) => "/v1/" + parts.map((p, i) => (i % 2 ? encodeURIComponent(p) : p)).join("/");

function emptyRow(body, cols, text) {
  const tr = el("tr");
  const td = el("td", "muted", text);
  td.colSpan = cols;
  tr.appendChild(td);
  body.appendChild(tr);
}

/** A random password that meets the policy: 18 characters from a 56-letter alphabet (~104 bits). */
function generatePassword() {
  const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

async function loadAgents() {
  const [{ agents }, { teams }] = await Promise.all([call("GET", "/v1/agents"), call("GET", "/v1/teams")]);
  const body = clear($("agents"));
  for (const a of agents) body.appendChild(agentRow(a, teams));
  if (!agents.length) emptyRow(body, 6, "No agents yet.");
}

function agentRow(a, teams) {
  const tr = el("tr");
  tr.dataset.testid = "agent";
  tr.dataset.agentId = a.id;
  tr.appendChild(el("td", "wrap", a.name));
  tr.appendChild(el("td", "wrap", a.email));
  const st = el("td");
  const presence = el("span", "pill " + (a.online ? "ready" : ""), a.online ? "online" : "offline");
  presence.dataset.testid = "presence";
  st.appendChild(presence);
  if (!a.active) st.appendChild(el("span", "pill failed", "deactivated"));
  tr.appendChild(st);

  const cap = el("td");
  const row = el("div", "row cap");
  row.appendChild(el("span", "", a.open_conversations + " /"));
  const capacity = el("input");
  capacity.type = "number";
  capacity.min = "1";
  capacity.max = "100";
  capacity.value = String(a.max_concurrent);
  capacity.dataset.testid = "capacity";
  capacity.setAttribute("aria-label", "Capacity of " + a.name);
  const saveCap = el("button", "ghost", "Save");
  saveCap.addEventListener("click", async () => {
    try {
      await call("PATCH", apiPath("agents", a.id), { max_concurrent: Number(capacity.value) });
      toast("Capacity of " + a.name + " is " + capacity.value);
      loadAgents();
    } catch (e) {
      toast("Not saved: " + e.message);
    }
  });
  row.append(capacity, saveCap);
  cap.appendChild(row);
  tr.appendChild(cap);

  const tm = el("td");
  if (!teams.length) tm.appendChild(el("span", "muted", "No teams yet."));
  for (const t of teams) {
    const l = el("label", "check");
    const box = el("input");
    box.type = "checkbox";
    box.checked = a.team_ids.includes(t.id);
    box.addEventListener("change", async () => {
      try {
        await call(box.checked ? "PUT" : "DELETE", apiPath("teams", t.id, "agents", a.id));
      } catch (e) {
        box.checked = !box.checked;
        toast("Not changed: " + e.message);
      }
    });
    l.append(box, document.createTextNode(t.name));
    tm.appendChild(l);
  }
  tr.appendChild(tm);

  const actions = el("td");
  const toggle = el("button", "ghost" + (a.active ? " danger" : ""), a.active ? "Deactivate" : "Activate");
  toggle.addEventListener("click", async () => {
    try {
      await call("POST", apiPath("agents", a.id, a.active ? "deactivate" : "activate"));
      loadAgents();
    } catch (e) {
      toast(e.message);
    }
  });
  const reset = el("button", "ghost", "Reset password");
  const form = el("form", "row");
  form.hidden = true;
  const pw = el("input");
  pw.type = "text";
  pw.autocomplete = "off";
  pw.placeholder = "New password";
  pw.setAttribute("aria-label", "New password for " + a.name);
  const gen = el("button", "ghost", "Generate");
  gen.type = "button";
  gen.addEventListener("click", () => (pw.value = generatePassword()));
  const set = el("button", "primary", "Set");
  set.type = "submit";
  const err = el("p", "error");
  form.append(pw, gen, set, err);
  reset.addEventListener("click", () => {
    form.hidden = !form.hidden;
    if (!form.hidden) pw.focus();
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    try {
      await call("POST", apiPath("agents", a.id, "password"), { password: pw.value });
      toast("New password set for " + a.name + "; the agent's open sessions were signed out.");
      form.hidden = true;
      pw.value = "";
    } catch (e2) {
      err.textContent = e2.message;
    }
  });
  actions.append(toggle, reset, form);
  tr.appendChild(actions);
  return tr;
}

$("agents-refresh").addEventListener("click", () => loadAgents());
$("a-generate").addEventListener("click", () => {
  $("a-password").type = "text";
  $("a-password").value = generatePassword();
});
$("agent-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("agent-error").textContent = "";
  const body = {
    name: $("a-name").value.trim(),
    email: $("a-email").value.trim(),
    password: $("a-password").value,
    max_concurrent: Number($("a-capacity").value) || 5,
  };
  try {
    const a = await call("POST", "/v1/agents", body);
    toast("Created " + a.name + " (" + a.email + "); they sign in at /agent.");
    for (const id of ["a-name", "a-email", "a-password"]) $(id).value = "";
    $("a-password").type = "password";
    loadAgents();
  } catch (err) {
    $("agent-error").textContent = err.message;
  }
});

async function loadTeams() {
  const [{ teams }, { agents }] = await Promise.all([call("GET", "/v1/teams"), call("GET", "/v1/agents")]);
  const box = clear($("teams"));
  const byId = new Map(agents.map((a) => [a.id, a]));
  for (const t of teams) box.appendChild(teamCard(t, agents, byId));
  if (!teams.length) box.appendChild(el("p", "muted", "No teams yet."));
  loadRoutingRules(teams);
}

// ---- routing rules: a handoff's topic keyword or user attribute -> a team ------------------------
async function loadRoutingRules(teams) {
  const keep = $("r-team").value; // the team picked stays picked across reloads
  const pick = clear($("r-team"));
  for (const t of teams) {
    const o = el("option", "", t.name);
    o.value = t.id;
    pick.appendChild(o);
  }
  if (teams.some((t) => t.id === keep)) pick.value = keep;
  const names = new Map(teams.map((t) => [t.id, t.name]));
  const body = clear($("routing-rules"));
  try {
    const { routing_rules: rules } = await call("GET", "/v1/routing-rules");
    for (const r of rules) {
      const tr = el("tr");
      tr.dataset.testid = "routing-rule";
      tr.appendChild(el("td", "", String(r.position)));
      tr.appendChild(el("td", "", r.kind === "topic" ? `writes “${r.keyword}”` : `${r.attribute} = ${r.value}`));
      tr.appendChild(el("td", "", names.get(r.team_id) || r.team_id));
      const del = el("button", "ghost", "Delete");
      del.addEventListener("click", async () => {
        try {
          await call("DELETE", apiPath("routing-rules", r.id));
          loadRoutingRules(teams);
        } catch (err) {
          toast(err.message);
        }
      });
      const td = el("td");
      td.appendChild(del);
      tr.appendChild(td);
      body.appendChild(tr);
    }
    if (!rules.length) emptyRow(body, 4, "No rules: every handoff goes to the whole queue.");
  } catch (err) {
    toast(err.message);
  }
}

$("r-kind").addEventListener("change", (e) => {
  const topic = e.target.value === "topic";
  $("r-keyword-box").hidden = !topic;
  $("r-attribute-box").hidden = topic;
  $("r-value-box").hidden = topic;
});

$("route-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("route-error").textContent = "";
  const kind = $("r-kind").value;
  const body = { team_id: $("r-team").value, kind };
  if (kind === "topic") body.keyword = $("r-keyword").value.trim();
  else Object.assign(body, { attribute: $("r-attribute").value.trim(), value: $("r-value").value.trim() });
  try {
    await call("POST", "/v1/routing-rules", body);
    for (const id of ["r-keyword", "r-attribute", "r-value"]) $(id).value = "";
    loadTeams();
  } catch (err) {
    $("route-error").textContent = err.message;
  }
});

function teamCard(t, agents, byId) {
  const card = el("div", "card");
  card.dataset.testid = "team";
  card.dataset.teamId = t.id;
  card.appendChild(el("h3", "", t.name));
  const err = el("p", "error");

  const rename = el("form", "row");
  const name = el("input");
  name.value = t.name;
  name.maxLength = 200;
  name.setAttribute("aria-label", "Name of " + t.name);
  const save = el("button", "", "Rename");
  save.type = "submit";
  const del = el("button", "ghost danger", "Delete team");
  del.type = "button";
  del.addEventListener("click", async () => {
    // Two clicks, no dialog: the first asks, the second deletes.
    if (!del.dataset.armed) {
      del.dataset.armed = "1";
      del.textContent = "Click again to delete “" + t.name + "”";
      return;
    }
    try {
      await call("DELETE", apiPath("teams", t.id));
      toast("Deleted " + t.name);
      loadTeams();
    } catch (e) {
      err.textContent = e.message;
    }
  });
  rename.append(name, save, del);
  rename.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    try {
      await call("PATCH", apiPath("teams", t.id), { name: name.value.trim() });
      loadTeams();
    } catch (e2) {
      err.textContent = e2.message;
    }
  });
  card.appendChild(rename);

  card.appendChild(el("h2", "", "Members"));
  const list = el("ul", "members");
  for (const id of t.agent_ids) {
    const a = byId.get(id);
    const li = el("li", "row");
    li.dataset.testid = "member";
    li.appendChild(el("span", "spacer", a ? a.name + " · " + a.email : id));
    const rm = el("button", "ghost", "Remove");
    rm.addEventListener("click", async () => {
      try {
        await call("DELETE", apiPath("teams", t.id, "agents", id));
        loadTeams();
      } catch (e) {
        err.textContent = e.message;
      }
    });
    li.appendChild(rm);
    list.appendChild(li);
  }
  if (!t.agent_ids.length) list.appendChild(el("li", "muted", "No members yet."));
  card.appendChild(list);

  const others = agents.filter((a) => !t.agent_ids.includes(a.id));
  if (others.length) {
    const add = el("form", "row");
    const pick = el("select");
    pick.setAttribute("aria-label", "Agent to add to " + t.name);
    for (const a of others) pick.appendChild(Object.assign(el("option", "", a.name + " · " + a.email), { value: a.id }));
    const go = el("button", "", "Add");
    go.type = "submit";
    add.append(pick, go);
    add.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await call("PUT", apiPath("teams", t.id, "agents", pick.value));
        loadTeams();
      } catch (e2) {
        err.textContent = e2.message;
      }
    });
    card.appendChild(add);
  }
  card.appendChild(err);
  return card;
}

$("team-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("team-error").textContent = "";
  try {
    await call("POST", "/v1/teams", { name: $("t-name").value.trim() });
    $("t-name").value = "";
    loadTeams();
  } catch (err) {
    $("team-error").textContent = err.message;
  }
});

// ---- boot ----------------------------------------------------------------------------------
function boot() {
  $("gate").hidden = true;
  $("app").hidden = false;
  $("forget").hidden = false;
  pollPushTotals().then(pollMetrics);
  timers.push(setInterval(pollMetrics, 3000));
  timers.push(setInterval(pollPushTotals, 10000));
  pollCsat();
  timers.push(setInterval(pollCsat, 10000));
  const tab = location.hash.slice(1);
  showTab(["dashboard", "knowledge", "bots", "push", "agents", "teams"].includes(tab) ? tab : "dashboard");
}

if (key) boot();
else forget();
