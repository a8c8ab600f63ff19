// The campaign-ledger console: plain JavaScript, no build step, no request but to this origin.
// Live updates come from the service's Server-Sent Event streams, read with fetch() rather than
// EventSource, because EventSource cannot send the Authorization header: the token never
// travels in a URL (where logs and history would keep it).
"use strict";

const TOKEN_KEY = "campaign-ledger-token";
const TIMELINE_VERSIONS = 20; // per artifact
const state = { campaigns: new Map(), selected: null, detailStream: null, refresh: null };
const $ = (id) => document.getElementById(id);

// ---- HTTP with the bearer token, asked for once when the service wants one -------------------

let tokenWaiters = [];
function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}
function askToken(message) {
  const form = $("token-form");
  form.hidden = false;
  $("token-error").textContent = message || "";
  $("token").focus();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  $("token-form").hidden = true;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((resolve) => resolve());
});

async function api(path) {
  for (;;) {
    const answer = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() } });
    if (answer.status === 401) {
      await askToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "");
      continue;
    }
    if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
    return answer.json();
  }
}

// ---- Server-Sent Events over fetch -------------------------------------------------------------

function follow(path, onMessage, onState) {
  const control = new AbortController();
  let lastId = null;
  (async () => {
    while (!control.signal.aborted) {
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const answer = await fetch(path, { headers, signal: control.signal, cache: "no-store" });
        if (answer.status === 401) {
          await askToken("That token was refused.");
          continue;
        }
        if (!answer.ok || !answer.body) throw new Error(`HTTP ${answer.status}`);
        onState("live");
        const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const fields = {};
            for (const line of block.split("\n")) {
              if (!line || line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const name = colon < 0 ? line : line.slice(0, colon);
              const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              fields[name] = name === "data" && fields.data !== undefined ? `${fields.data}\n${text}` : text;
            }
            if (fields.id !== undefined) lastId = fields.id;
            if (fields.data !== undefined) onMessage(fields.event || "message", JSON.parse(fields.data));
          }
        }
      } catch (error) {
        if (control.signal.aborted) return;
      }
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  })();
  return control;
}

// ---- rendering (textContent only: the data is never read as HTML) ------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}
const badge = (value) => el("span", { class: `badge ${value}`, text: value });
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const timeEl = (iso) => el("time", { datetime: iso || "", text: when(iso) });

function setStatus(text) {
  $("status").textContent = text;
}

function renderCampaigns() {
  const list = $("campaign-list");
  const items = [...state.campaigns.values()].filter((c) => !c.deleted);
  items.sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""));
  list.replaceChildren(
    ...items.map((c) => {
      const button = el(
        "button",
        { type: "button", "aria-current": c.campaign_id === state.selected ? "true" : "false" },
        el("span", { class: "name", text: c.name || c.campaign_id }),
        el("span", { class: "sub", text: `${c.status} · revision ${c.revision}` }),
      );
      button.addEventListener("click", () => select(c.campaign_id));
      return el("li", { "data-campaign": c.campaign_id }, button);
    }),
  );
  $("campaigns-empty").hidden = items.length > 0;
}

function renderSnapshot(snapshot, deleted) {
  $("detail-empty").hidden = true;
  $("campaign").hidden = false;
  $("campaign-name").textContent = snapshot.name || snapshot.campaign_id;
  $("campaign-id").textContent = snapshot.campaign_id;
  $("campaign-status").textContent = snapshot.status;
  $("campaign-revision").textContent = String(snapshot.revision);
  const updated = $("campaign-updated");
  updated.dateTime = snapshot.updated_at || "";
  updated.textContent = when(snapshot.updated_at);
  $("campaign-deleted").hidden = !deleted;

  const counts = snapshot.counts || {};
  const labels = {
    versions: "Versions", audit_reports: "Audit reports", iteration_logs: "Feedback rounds",
    approved_versions: "Approved", archived_versions: "Archived",
  };
  $("counts").replaceChildren(
    ...Object.entries(labels).filter(([key]) => key in counts).map(([key, label]) =>
      el("div", {}, el("dt", { text: label }), el("dd", { text: String(counts[key]) }))),
  );

  $("artifacts").tBodies[0].replaceChildren(
    ...snapshot.artifacts.map((a) => {
      const active = a.active_version;
      return el("tr", { "data-artifact": a.artifact_id },
        el("th", { scope: "row", text: a.artifact_id }),
        el("td", { text: a.artifact_type }),
        el("td", { text: String(a.version_count) }),
        el("td", { class: "active-version", text: active ? `v${active.version_number} (${active.version_id})` : "none (all archived)" }),
        el("td", {}, active ? badge(active.audit_state) : null),
        el("td", { text: active ? (active.approved ? "yes" : "no") : "—" }),
      );
    }),
  );

  $("runs").tBodies[0].replaceChildren(
    ...(snapshot.runs || []).map((r) =>
      el("tr", {},
        el("th", { scope: "row", text: r.run_id }),
        el("td", {}, badge(r.status)),
        el("td", { text: r.execution_mode || "—" }),
        el("td", { text: r.version_count === undefined ? "—" : String(r.version_count) }),
        el("td", {}, timeEl(r.started_at)),
        el("td", {}, timeEl(r.completed_at)),
      )),
  );
}

async function renderTimeline(snapshot) {
  const cid = encodeURIComponent(snapshot.campaign_id);
  const iterations = (await api(`/campaigns/${cid}/iterations?limit=500`)).items;
  const feedbackOf = new Map();
  for (const log of iterations) {
    if (!feedbackOf.has(log.version_id)) feedbackOf.set(log.version_id, []);
    feedbackOf.get(log.version_id).push(log);
  }
  const sections = [];
  for (const artifact of snapshot.artifacts) {
    const aid = encodeURIComponent(artifact.artifact_id);
    // The newest versions only: a long history stays one request per version shown.
    const from = Math.max(0, artifact.version_count - TIMELINE_VERSIONS);
    const versions = (await api(
      `/campaigns/${cid}/artifacts/${aid}/versions?limit=${TIMELINE_VERSIONS}&after=${from}`)).items;
    const lineages = await Promise.all(versions.map((v) =>
      api(`/campaigns/${cid}/versions/${encodeURIComponent(v.version_id)}/audits`)));
    const list = el("ol", { class: "versions" });
    versions.forEach((v, index) => {
      const marks = [v.archived ? "archived" : null, v.approved ? "approved" : null].filter(Boolean);
      const item = el("li", { class: v.archived ? "archived" : null, "data-version": v.version_id },
        el("strong", { text: `v${v.version_number}` }), " ",
        badge(v.audit_state), " ",
        el("span", { class: "muted", text: `${when(v.created_at)}${marks.length ? " · " + marks.join(", ") : ""}` }),
      );
      const audits = lineages[index].items;
      if (audits.length) {
        item.append(el("ol", { class: "audits", "aria-label": `Audit attempts of v${v.version_number}` },
          ...audits.map((a) => el("li", {},
            `attempt ${a.attempt}: `, badge(a.outcome),
            a.error ? ` ${a.error}` : "",
            a.category_scores ? ` · ${Object.entries(a.category_scores).map(([k, s]) => `${k} ${s.score}`).join(", ")}` : "",
          ))));
      }
      const feedback = feedbackOf.get(v.version_id) || [];
      if (feedback.length) {
        item.append(el("ul", { class: "feedback", "aria-label": `Feedback on v${v.version_number}` },
          ...feedback.map((f) => el("li", {},
            "feedback ", el("q", { text: f.feedback_text }),
            f.resulting_versions && f.resulting_versions.length
              ? ` → led to ${f.resulting_versions.map((r) => `v${r.version_number}`).join(", ")}` : "",
          ))));
      }
      list.append(item);
    });
    const section = el("section", { class: "artifact-history", "data-artifact": artifact.artifact_id, "aria-label": `History of ${artifact.artifact_id}` },
      el("h4", { text: `${artifact.artifact_id} (${artifact.artifact_type})` }),
      from > 0 ? el("p", { class: "muted", text: `v1 to v${from} not shown` }) : null,
      list);
    decorateHistory(section, snapshot.campaign_id, versions, lineages); // review.js
    sections.push(section);
  }
  if (state.selected === snapshot.campaign_id) $("timeline").replaceChildren(...sections);
}

function scheduleTimeline(snapshot) {
  // Bursts of revisions cost one reload of the history, not one each.
  clearTimeout(state.refresh);
  state.refresh = setTimeout(() => renderTimeline(snapshot).catch((e) => setStatus(String(e))), 150);
}

// ---- selection, live updates -----------------------------------------------------------------

function select(campaignId) {
  state.selected = campaignId;
  if (state.detailStream) state.detailStream.abort();
  renderCampaigns();
  history.replaceState(null, "", `#${encodeURIComponent(campaignId)}`);
  state.detailStream = follow(
    `/campaigns/${encodeURIComponent(campaignId)}/stream`,
    (event, snapshot) => {
      if (snapshot.campaign_id !== state.selected) return;
      renderSnapshot(snapshot, event === "deleted");
      scheduleTimeline(snapshot);
      refreshOpenPanel(snapshot); // review.js
    },
    () => {},
  );
  $("detail").focus();
}

function noteCampaign(snapshot) {
  const known = state.campaigns.get(snapshot.campaign_id);
  if (known && known.revision >= snapshot.revision) return;
  state.campaigns.set(snapshot.campaign_id, {
    campaign_id: snapshot.campaign_id, name: snapshot.name, status: snapshot.status,
    revision: snapshot.revision, updated_at: snapshot.updated_at, deleted: snapshot.deleted,
  });
  renderCampaigns();
}

async function loadCampaigns() {
  let after = "";
  do {
    const page = await api(`/campaigns?limit=500${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    page.items.forEach((c) => noteCampaign({ ...c, deleted: false }));
    after = page.next;
  } while (after);
}

async function loadDeadLetters() {
  const items = (await api("/dead-letters/recent")).items;
  $("dead-letters").tBodies[0].replaceChildren(
    ...items.map((d) => el("tr", {},
      el("td", {}, timeEl(d.published_at)),
      el("td", { text: d.reason }),
      el("td", { text: d.detail }),
      el("td", { text: `${d.topic} [${d.partition}] @${d.offset}` }),
      el("td", { text: d.key ?? "—" }),
    )),
  );
  $("dead-empty").hidden = items.length > 0;
}

async function start() {
  // Following first, then the listing: nothing published in between is missed.
  follow("/stream", (event, snapshot) => {
    noteCampaign(snapshot);
    analyticsChanged(); // review.js
  }, (s) => setStatus(s === "live" ? "live" : "reconnecting…"));
  await loadCampaigns();
  await loadDeadLetters();
  setInterval(() => loadDeadLetters().catch(() => {}), 10000);
  if (location.hash === "#/analytics") showView("analytics"); // review.js
  else {
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted) select(wanted);
  }
}

start().catch((error) => setStatus(`error: ${error.message}`));
