// The console's reviewing views: a version's content, the diff between two versions with the
// feedback between them, a score chart per artifact, and the analytics page. Loaded after
// app.js and built on its helpers (el, api, $, state). Content is data from agents and users:
// it is only ever set as text (textContent, text nodes, attribute values), never parsed as
// HTML, so markup in it shows literally and scripts in it never run.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TREE_ITEMS = 200; // array items and object keys shown per level before "… more"
const review = { open: null, analyticsTimer: null };

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// ---- content as a readable tree --------------------------------------------------------------

function valueNode(value) {
  if (value === null) return el("span", { class: "json-null", text: "null" });
  if (typeof value === "string") return el("span", { class: "json-string", text: value });
  if (typeof value === "number" || typeof value === "boolean") {
    return el("span", { class: `json-${typeof value}`, text: String(value) });
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return el("span", { class: "json-empty", text: "[ ] (empty list)" });
    const list = el("ol", { class: "json-array", start: "0" });
    value.slice(0, TREE_ITEMS).forEach((item) => list.append(el("li", {}, valueNode(item))));
    if (value.length > TREE_ITEMS) list.append(el("li", { class: "muted", text: `… ${value.length - TREE_ITEMS} more items` }));
    return list;
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return el("span", { class: "json-empty", text: "{ } (empty object)" });
  const list = el("dl", { class: "json-object" });
  keys.slice(0, TREE_ITEMS).forEach((key) => list.append(el("div", {}, el("dt", { text: key }), el("dd", {}, valueNode(value[key])))));
  if (keys.length > TREE_ITEMS) list.append(el("div", { class: "muted", text: `… ${keys.length - TREE_ITEMS} more keys` }));
  return list;
}

function contentNode(content) {
  // A content that is one text field reads as that text; anything else as a tree.
  const keys = Object.keys(content);
  if (keys.length === 1 && typeof content[keys[0]] === "string") {
    return el("div", { class: "content-text" }, el("p", { class: "content-key", text: keys[0] }), el("pre", { class: "text-block", text: content[keys[0]] }));
  }
  return valueNode(content);
}

function scoresText(scores) {
  if (!scores) return "no category scores";
  return Object.entries(scores).map(([name, s]) => `${name} ${s && s.score !== undefined ? s.score : "—"}`).join(", ");
}

// ---- the version panel ----------------------------------------------------------------------

async function openVersion(campaignId, versionId) {
  review.open = { kind: "version", campaignId, versionId };
  const path = `/campaigns/${encodeURIComponent(campaignId)}/versions/${encodeURIComponent(versionId)}`;
  const version = await api(path);
  if (!review.open || review.open.versionId !== versionId || review.open.kind !== "version") return;
  const audit = version.latest_audit;
  const marks = [version.approved ? "approved" : null, version.archived ? "archived" : null].filter(Boolean);
  const panel = $("version-panel");
  panel.replaceChildren(
    el("header", { class: "panel-head" },
      el("h3", { id: "version-title", text: `${version.artifact_id} · v${version.version_number}` }),
      el("button", { type: "button", class: "close", "aria-label": "Close the version" , text: "Close" })),
    el("p", { class: "meta" },
      badge(version.audit_state), " ",
      el("span", { text: `${version.artifact_type} · made ${when(version.created_at)}${marks.length ? " · " + marks.join(", ") : ""}` }),
      version.parent_version_id ? el("span", { text: ` · from ${version.parent_version_id}` }) : null),
    audit ? el("p", { class: "latest-audit", text: `Latest audit: attempt ${audit.attempt}, ${audit.outcome} · ${scoresText(audit.category_scores)}` }) : el("p", { class: "muted", text: "Not audited yet." }),
    el("h4", { text: "Content" }),
    el("div", { class: "content", "data-testid": "version-content" }, contentNode(version.content)),
  );
  panel.querySelector(".close").addEventListener("click", closePanels);
  panel.hidden = false;
  $("diff-panel").hidden = true;
  panel.focus();
}

// ---- the diff view --------------------------------------------------------------------------

function textDiffNode(textDiff) {
  const block = el(textDiff.granularity === "line" ? "pre" : "p", { class: `text-diff ${textDiff.granularity}` });
  for (const op of textDiff.ops) {
    if (op.op === "equal") block.append(document.createTextNode(op.text));
    else block.append(el(op.op === "insert" ? "ins" : "del", { text: op.text }));
  }
  return block;
}

function jsonText(value) {
  return el("pre", { class: "json-text", text: JSON.stringify(value, null, 2) });
}

function changeNode(change) {
  const item = el("li", { class: `change ${change.kind}`, "data-path": change.path },
    el("code", { class: "path", text: change.path || "/" }), " ", el("span", { class: `kind ${change.kind}`, text: change.kind }));
  if (change.text_diff) item.append(textDiffNode(change.text_diff));
  else if (change.kind === "changed") item.append(el("div", { class: "both" }, el("div", {}, el("span", { class: "muted", text: "before" }), jsonText(change.old)), el("div", {}, el("span", { class: "muted", text: "after" }), jsonText(change.new))));
  else item.append(jsonText(change.kind === "added" ? change.new : change.old));
  return item;
}

async function openDiff(campaignId, versionId, against) {
  review.open = { kind: "diff", campaignId, versionId, against };
  const query = against ? `?against=${encodeURIComponent(against)}` : "";
  const diff = await api(`/campaigns/${encodeURIComponent(campaignId)}/versions/${encodeURIComponent(versionId)}/diff${query}`);
  if (!review.open || review.open.versionId !== versionId || review.open.kind !== "diff") return;
  const panel = $("diff-panel");
  const feedback = diff.feedback.length
    ? el("div", { class: "feedback-highlight", role: "note", "aria-label": "Feedback between the versions" },
      el("h4", { text: "Feedback that led here" }),
      ...diff.feedback.map((f) => el("blockquote", { "data-feedback": f.feedback_id },
        el("mark", { text: f.feedback_text }),
        el("footer", { class: "muted", text: `on v${Math.min(diff.against.version_number, diff.version.version_number)}${f.submitted_by ? " by " + f.submitted_by : ""} · ${when(f.submitted_at)}` }))))
    : el("p", { class: "muted", text: "No feedback between these versions." });
  const counts = diff.counts;
  panel.replaceChildren(
    el("header", { class: "panel-head" },
      el("h3", { id: "diff-title", text: `${diff.artifact_id} · v${diff.against.version_number} → v${diff.version.version_number}` }),
      el("button", { type: "button", class: "close", "aria-label": "Close the changes", text: "Close" })),
    feedback,
    el("p", { class: "meta", text: `${counts.changed} changed · ${counts.added} added · ${counts.removed} removed` }),
    diff.changes.length ? el("ol", { class: "changes" }, ...diff.changes.map(changeNode)) : el("p", { class: "muted", text: "The contents are the same." }),
  );
  panel.querySelector(".close").addEventListener("click", closePanels);
  panel.hidden = false;
  $("version-panel").hidden = true;
  panel.focus();
}

function closePanels() {
  review.open = null;
  $("version-panel").hidden = true;
  $("diff-panel").hidden = true;
}

// Called by app.js with each snapshot of the selected campaign: an open version's marks and
// audit may have changed (its content never does).
function refreshOpenPanel(snapshot) {
  const open = review.open;
  if (!open || open.campaignId !== snapshot.campaign_id) return;
  const again = open.kind === "version" ? openVersion(open.campaignId, open.versionId) : openDiff(open.campaignId, open.versionId, open.against);
  again.catch(() => {});
}

// ---- the score chart of one artifact ----------------------------------------------------------

const PALETTE = ["#0b5cad", "#a4161a", "#146c2e", "#7a4d00", "#5b2a86", "#00677a"];

function scoreChart(artifactId, versions, lineages) {
  // Per version, the latest audit attempt that has scores; one point per version per category.
  const points = versions.map((v, i) => {
    const scored = lineages[i].items.filter((a) => a.category_scores).at(-1);
    return { n: v.version_number, scores: scored ? scored.category_scores : {} };
  });
  const categories = [...new Set(points.flatMap((p) => Object.keys(p.scores)))].sort();
  if (!categories.length) return null;
  const width = 360, height = 150, left = 34, right = 12, top = 10, bottom = 24;
  const first = points[0].n, last = points.at(-1).n;
  const x = (n) => left + (last === first ? (width - left - right) / 2 : ((n - first) / (last - first)) * (width - left - right));
  const y = (score) => top + (1 - Math.max(0, Math.min(100, score)) / 100) * (height - top - bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "score-chart", "data-artifact": artifactId, "aria-labelledby": `chart-${artifactId}` },
    svg("title", { id: `chart-${artifactId}`, text: `Audit scores of ${artifactId} by version` }));
  for (const tick of [0, 50, 100]) {
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }),
      svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", class: "tick", text: String(tick) }));
  }
  for (const p of points) chart.append(svg("text", { x: x(p.n), y: height - 6, "text-anchor": "middle", class: "tick", text: `v${p.n}` }));
  categories.forEach((category, index) => {
    const colour = PALETTE[index % PALETTE.length];
    const mine = points.filter((p) => typeof (p.scores[category] || {}).score === "number");
    const group = svg("g", { class: "series", "data-category": category, stroke: colour, fill: colour });
    if (mine.length > 1) group.append(svg("polyline", { fill: "none", "stroke-width": 2, points: mine.map((p) => `${x(p.n)},${y(p.scores[category].score)}`).join(" ") }));
    for (const p of mine) {
      group.append(svg("circle", { cx: x(p.n), cy: y(p.scores[category].score), r: 4, class: "point", "data-version": p.n },
        svg("title", { text: `${category} v${p.n}: ${p.scores[category].score}` })));
    }
    chart.append(group);
  });
  const legend = el("ul", { class: "legend" }, ...categories.map((c, i) => {
    const swatch = svg("svg", { width: 10, height: 10, "aria-hidden": "true" }, svg("rect", { width: 10, height: 10, fill: PALETTE[i % PALETTE.length] }));
    return el("li", {}, swatch, ` ${c}`);
  }));
  return el("figure", { class: "chart" }, chart, el("figcaption", {}, legend));
}

// Called by app.js for each artifact of the history: read and compare buttons, the chart.
function decorateHistory(section, campaignId, versions, lineages) {
  versions.forEach((v, index) => {
    const item = section.querySelector(`li[data-version="${CSS.escape(v.version_id)}"]`);
    if (!item) return;
    const actions = el("span", { class: "actions" });
    const read = el("button", { type: "button", class: "link", text: `Read v${v.version_number}` });
    read.addEventListener("click", () => openVersion(campaignId, v.version_id).catch((e) => setStatus(String(e))));
    actions.append(read);
    if (v.version_number > 1) {
      // the service picks what to compare with: the parent, else the version before
      const parent = v.parent_version_id && versions.find((o) => o.version_id === v.parent_version_id);
      const from = parent ? parent.version_number : v.version_number - 1;
      const compare = el("button", { type: "button", class: "link", text: `Changes from v${from}` });
      compare.addEventListener("click", () => openDiff(campaignId, v.version_id, null).catch((e) => setStatus(String(e))));
      actions.append(" ", compare);
    }
    item.querySelector("strong").after(" ", actions);
  });
  const chart = scoreChart(section.dataset.artifact, versions, lineages);
  if (chart) section.querySelector("h4").after(chart);
}

// ---- the analytics page -----------------------------------------------------------------------

const pct = (value) => (value === null || value === undefined ? "—" : `${Math.round(value * 1000) / 10} %`);
const num = (value, digits = 2) => (value === null || value === undefined ? "—" : String(Math.round(value * 10 ** digits) / 10 ** digits));
const hours = (seconds) => (seconds === null || seconds === undefined ? "—" : `${num(seconds / 3600, 1)} h`);

function trendChart(kind, weeks) {
  // First-pass rate (0–100 %) and mean versions until passed (0–max) per week, one line each.
  if (!weeks.length) return null;
  const width = 560, height = 170, left = 40, right = 40, top = 12, bottom = 28;
  const maxVersions = Math.max(1, ...weeks.map((w) => w.mean_versions_to_first_pass || 0));
  const x = (i) => left + (weeks.length === 1 ? (width - left - right) / 2 : (i / (weeks.length - 1)) * (width - left - right));
  const yRate = (r) => top + (1 - r) * (height - top - bottom);
  const yVersions = (v) => top + (1 - v / maxVersions) * (height - top - bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "trend-chart", "data-artifact-type": kind, "aria-labelledby": `trend-${kind}` },
    svg("title", { id: `trend-${kind}`, text: `${kind}: first-pass rate and versions until passed, by week` }));
  chart.append(svg("line", { x1: left, x2: width - right, y1: yRate(0), y2: yRate(0), class: "grid" }),
    svg("line", { x1: left, x2: width - right, y1: yRate(1), y2: yRate(1), class: "grid" }),
    svg("text", { x: left - 6, y: yRate(1) + 4, "text-anchor": "end", class: "tick", text: "100 %" }),
    svg("text", { x: left - 6, y: yRate(0) + 4, "text-anchor": "end", class: "tick", text: "0" }),
    svg("text", { x: width - right + 6, y: yVersions(maxVersions) + 4, class: "tick", text: num(maxVersions, 1) }));
  weeks.forEach((w, i) => {
    if (weeks.length <= 12 || i % Math.ceil(weeks.length / 12) === 0) chart.append(svg("text", { x: x(i), y: height - 8, "text-anchor": "middle", class: "tick", text: w.week.slice(5) }));
  });
  const series = [
    ["first-pass rate", "#146c2e", weeks.map((w, i) => (w.first_pass_rate === null ? null : [x(i), yRate(w.first_pass_rate)]))],
    ["versions until passed", "#0b5cad", weeks.map((w, i) => (w.mean_versions_to_first_pass === null ? null : [x(i), yVersions(w.mean_versions_to_first_pass)]))],
  ];
  for (const [label, colour, pts] of series) {
    const present = pts.filter(Boolean);
    const group = svg("g", { class: "series", "data-series": label, stroke: colour, fill: colour });
    if (present.length > 1) group.append(svg("polyline", { fill: "none", "stroke-width": 2, points: present.map((p) => p.join(",")).join(" ") }));
    for (const p of present) group.append(svg("circle", { cx: p[0], cy: p[1], r: 3 }));
    chart.append(group);
  }
  const legend = el("ul", { class: "legend" }, ...series.map(([label, colour]) => el("li", {},
    svg("svg", { width: 10, height: 10, "aria-hidden": "true" }, svg("rect", { width: 10, height: 10, fill: colour })), ` ${label}`)));
  return el("figure", { class: "chart" }, chart, el("figcaption", {}, legend));
}

function typeSection(t) {
  const figures = [
    ["Artifacts", String(t.artifacts)], ["Versions", String(t.versions)],
    ["Versions until passed (mean)", num(t.mean_versions_to_first_pass)],
    ["Versions until passed (p90)", t.p90_versions_to_first_pass === null ? "—" : String(t.p90_versions_to_first_pass)],
    ["First-pass rate", pct(t.first_pass_rate)],
    ["First version to approval (mean)", hours(t.mean_seconds_to_approval)],
  ];
  const categories = Object.entries(t.score_change_per_round);
  return el("section", { class: "type-figures", "data-artifact-type": t.artifact_type, "aria-label": `Iterations of ${t.artifact_type}` },
    el("h3", { text: t.artifact_type }),
    el("dl", { class: "counts" }, ...figures.map(([label, value]) => el("div", {}, el("dt", { text: label }), el("dd", { text: value })))),
    categories.length
      ? el("table", { class: "score-changes" },
        el("caption", { text: "Mean score change per feedback round" }),
        el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Category" }), el("th", { scope: "col", text: "Mean change" }), el("th", { scope: "col", text: "Rounds" }))),
        el("tbody", {}, ...categories.map(([name, c]) => el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: `${c.mean > 0 ? "+" : ""}${num(c.mean)}` }), el("td", { text: String(c.rounds) })))))
      : el("p", { class: "muted", text: "No feedback rounds with scores on both sides yet." }),
    el("h4", { text: "By week of the first version" }),
    trendChart(t.artifact_type, t.by_week),
    el("table", { class: "weeks" },
      el("thead", {}, el("tr", {}, ...["Week", "Artifacts", "Versions", "Until passed", "First-pass rate", "To approval"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...t.by_week.map((w) => el("tr", {}, el("th", { scope: "row", text: w.week }), el("td", { text: String(w.artifacts) }), el("td", { text: String(w.versions) }),
        el("td", { text: num(w.mean_versions_to_first_pass) }), el("td", { text: pct(w.first_pass_rate) }), el("td", { text: hours(w.mean_seconds_to_approval) }))))));
}

async function loadAnalytics() {
  const form = $("analytics-form");
  const params = new URLSearchParams();
  for (const name of ["since", "until", "artifact_type"]) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  // One aggregation over every campaign: on a large ledger the first answer takes a while.
  $("analytics-computed").textContent = "computing…";
  const answer = await fetch(`/analytics/iterations?${params}`, { headers: { Accept: "application/json", ...authHeaders() } });
  if (answer.status === 401) {
    await askToken("That token was refused.");
    return loadAnalytics();
  }
  const body = await answer.json();
  if (!answer.ok) {
    $("analytics-computed").textContent = "";
    $("analytics-error").textContent = body.detail || `HTTP ${answer.status}`;
    return;
  }
  $("analytics-error").textContent = "";
  $("analytics-computed").textContent = `computed ${when(body.computed_at)} in ${num(body.compute_seconds, 2)} s`;
  $("analytics-types").replaceChildren(...(body.types.length ? body.types.map(typeSection) : [el("p", { class: "muted", text: "No artifacts in this window." })]));
}

function showView(name) {
  $("analytics-view").hidden = name !== "analytics";
  document.querySelector(".layout").hidden = name === "analytics";
  for (const link of document.querySelectorAll(".views a")) link.setAttribute("aria-current", link.dataset.view === name ? "page" : "false");
  if (name === "analytics") loadAnalytics().catch((e) => setStatus(String(e)));
}

// Called by app.js for every published snapshot: analytics follow the data, at most every 10 s
// (one aggregation covers every campaign; the service also reuses an answer for a while).
function analyticsChanged() {
  if ($("analytics-view").hidden) return;
  if (review.analyticsTimer) return; // a refresh is already due
  review.analyticsTimer = setTimeout(() => {
    review.analyticsTimer = null;
    if (!$("analytics-view").hidden) loadAnalytics().catch(() => {});
  }, 10000);
}

$("analytics-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadAnalytics().catch((e) => setStatus(String(e)));
});
window.addEventListener("hashchange", () => showView(location.hash === "#/analytics" ? "analytics" : "campaigns"));
