// Safe DOM helpers shared by the console and the admin pages: text only, never HTML.

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** An http(s) URL, normalised, or null for anything else (javascript:, data:, relative...). */
export function safeHref(raw) {
  try {
    const u = new URL(String(raw));
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (_e) {
    return null;
  }
}

export function link(href, text, cls) {
  const a = el("a", cls || "link", text);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  a.referrerPolicy = "no-referrer";
  return a;
}

/** Append text to parent, turning bare http(s) URLs into safe links. */
export function richText(parent, text) {
  const re = /https?:\/\/[^\s<>"'`)\]]+/g;
  const s = String(text ?? "");
  let last = 0;
  let m;
  while ((m = re.exec(s))) {
    if (m.index > last) parent.appendChild(document.createTextNode(s.slice(last, m.index)));
    const href = safeHref(m[0]);
    parent.appendChild(href ? link(href, m[0]) : document.createTextNode(m[0]));
    last = m.index + m[0].length;
  }
  if (last < s.length) parent.appendChild(document.createTextNode(s.slice(last)));
  return parent;
}

export function citations(cites) {
  const wrap = el("div", "cites");
  if (!Array.isArray(cites) || !cites.length) return wrap;
  wrap.appendChild(el("span", "cites-label", "Sources:"));
  for (const c of cites) {
    const label = String((c && (c.title || c.source)) || "source");
    const href = c && c.source ? safeHref(c.source) : null;
    const item = href ? link(href, label, "cite") : el("span", "cite", label);
    item.dataset.testid = "citation";
    wrap.appendChild(item);
  }
  return wrap;
}

export function uuid() {
  return crypto.randomUUID();
}

export function fmtTime(iso) {
  const d = iso ? new Date(iso) : new Date();
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export class ApiError extends Error {
  constructor(status, code, detail, field) {
    super(detail || code || String(status));
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** JSON REST call with a bearer token. */
export async function api(token, method, path, body) {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers, body: payload });
  const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = data.error || {};
    throw new ApiError(r.status, e.code, e.detail, e.field);
  }
  return data;
}
