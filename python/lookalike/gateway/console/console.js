// The lookalike console: searches the gateway's JSON API from the browser.
// No build step: plain JavaScript the gateway serves as is.
"use strict";

const API = "/lookalike.v1.";
const SEARCH = API + "SearchService/Search";
const $ = (id) => document.getElementById(id);
const state = {
  photo: null,          // the File to search with, if any
  schema: {},           // attribute name -> keyword | numeric | bool | timestamp
  last: null,           // the last search: {request, withPhoto}, for the next page
  imageUrls: [],        // object URLs of the shown images, released on the next render
  shown: 0,             // hits shown up to the current page, to number the next page's
  jobsTimer: null,      // the next refresh of the jobs' progress
};

// --- calls ---------------------------------------------------------------------------

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const key = $("api-key").value.trim();
  if (key) headers["Authorization"] = "Bearer " + key;
  return headers;
}

async function answer(response) {
  const text = await response.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`);
  }
  if (!response.ok) throw new Error(`${data.code || "HTTP " + response.status}: ${data.message}`);
  return data;
}

async function call(method, body) {
  const response = await fetch(API + method, {
    method: "POST", headers: authHeaders({"Content-Type": "application/json"}), body: JSON.stringify(body || {}),
  });
  return answer(response);
}

async function searchWithPhoto(request) {
  const form = new FormData();
  form.append("image", state.photo, state.photo.name || "photo");
  form.append("request", JSON.stringify(request));
  return answer(await fetch(SEARCH, {method: "POST", headers: authHeaders(), body: form}));
}

// --- the query -----------------------------------------------------------------------

function buildFilter() {
  const must = [];
  for (const [name, kind] of Object.entries(state.schema)) {
    if (kind === "keyword") {
      const values = $(`filter-${name}`).value.split(",").map((v) => v.trim()).filter(Boolean);
      if (values.length === 1) must.push({match: {attribute: name, value: values[0]}});
      if (values.length > 1) must.push({match: {attribute: name, any_of: {values}}});
    } else if (kind === "numeric" || kind === "timestamp") {
      const range = {attribute: name};
      for (const [bound, key] of [["min", "gte"], ["max", "lte"]]) {
        const raw = $(`filter-${name}-${bound}`).value;
        if (raw === "") continue;
        range[key] = kind === "timestamp" ? Date.parse(raw) / 1000 + (bound === "max" ? 86399 : 0) : Number(raw);
      }
      if (Object.keys(range).length > 1) must.push({range});
    } else if (kind === "bool") {
      const value = $(`filter-${name}`).value;
      if (value) must.push({is: {attribute: name, value: value === "yes"}});
    }
  }
  return must.length ? {must} : null;
}

function baseRequest() {
  const request = {k: Number($("k").value), with_metadata: true};
  if ($("using").value) request.using = $("using").value;
  const filter = buildFilter();
  if (filter) request.filter = filter;
  return request;
}

function queryFromInputs() {
  const request = baseRequest();
  const text = $("text").value.trim();
  if (state.photo && text) {
    const photoWeight = Number($("weight").value) / 100;
    request.query = {hybrid: {text, image_weight: photoWeight, text_weight: 1 - photoWeight}};
  } else if (text) {
    request.query = {text};
  } else if (!state.photo) {
    throw new Error("Give a photo, some words, or both.");
  }
  return {request, withPhoto: Boolean(state.photo)};
}

async function run(search, pageToken) {
  const request = pageToken ? Object.assign({}, search.request, {page_token: pageToken}) : search.request;
  showError(null);
  $("summary").textContent = "Searching…";
  const started = performance.now();
  try {
    const response = search.withPhoto ? await searchWithPhoto(request) : await call("SearchService/Search", request);
    state.last = search;
    render(response, performance.now() - started, pageToken);
  } catch (e) {
    $("summary").textContent = "";
    showError(e.message);
  }
}

function searchFromInputs() {
  try {
    run(queryFromInputs());
  } catch (e) {
    showError(e.message);
  }
}

function moreLikeThis(id) {
  const request = baseRequest();
  request.query = {product_id: id};
  run({request, withPhoto: false});
}

// --- the answer ----------------------------------------------------------------------

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function attributeText(value) {
  if (value.keywords) return (value.keywords.values || []).join(", ");
  if (value.number !== undefined) return String(value.number);
  if (value.flag !== undefined) return value.flag ? "yes" : "no";
  if (value.timestamp !== undefined) return new Date(Number(value.timestamp) * 1000).toISOString().slice(0, 10);
  return "";
}

async function showImage(holder, metadata) {
  let url = null;
  if (metadata.image_sha256) {
    // fetch, not <img src>: an image tag cannot send the API key.
    const response = await fetch(`/v1/images/${metadata.image_sha256}`, {headers: authHeaders()});
    if (response.ok) {
      url = URL.createObjectURL(await response.blob());
      state.imageUrls.push(url);
    }
  } else if (/^(https?:)?\//.test(metadata.image_uri || "")) {
    url = metadata.image_uri;
  }
  if (!url) {
    holder.textContent = "no image";
    return;
  }
  const img = document.createElement("img");
  img.alt = metadata.title || "";
  img.src = url;
  holder.replaceChildren(img);
}

function hitCard(hit, rank) {
  const metadata = hit.metadata || {};
  const card = document.createElement("article");
  card.className = "hit";
  card.dataset.id = hit.id;
  const picture = document.createElement("div");
  picture.className = "picture";
  showImage(picture, metadata);
  const body = document.createElement("div");
  body.className = "body";
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = metadata.title || `product ${hit.id}`;
  const score = document.createElement("div");
  score.className = "score";
  score.textContent = `#${rank} · score ${hit.score.toFixed(4)} · id ${hit.id}`;
  const attrs = document.createElement("dl");
  attrs.className = "attrs";
  for (const [name, value] of Object.entries(metadata.attributes || {}).sort()) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = attributeText(value);
    dd.dataset.attribute = name;
    attrs.append(dt, dd);
  }
  const more = document.createElement("button");
  more.type = "button";
  more.className = "more-like-this";
  more.textContent = "More like this";
  more.addEventListener("click", () => moreLikeThis(hit.id));
  body.append(title, score, attrs, more);
  card.append(picture, body);
  return card;
}

function render(response, elapsedMs, pageToken) {
  state.imageUrls.forEach((url) => URL.revokeObjectURL(url));
  state.imageUrls = [];
  const hits = response.hits || [];
  const first = pageToken ? state.shown : 0;   // hits on the pages before this one
  state.shown = first + hits.length;
  $("results").replaceChildren(...hits.map((hit, i) => hitCard(hit, first + i + 1)));
  $("summary").textContent = hits.length ? `${hits.length} hits in ${elapsedMs.toFixed(0)} ms (round trip)`
    : "No products match.";
  const plan = response.plan || {}, t = response.timings || {};
  const ms = (us) => (Number(us || 0) / 1000).toFixed(1);
  $("plan").innerHTML = "";
  const parts = [
    ["plan", plan.plan || "-"], ["estimated matches", plan.estimated_matches], ["ef", plan.ef],
    ["distances", plan.distances], ["decode", ms(t.decode_us) + " ms"], ["preprocess", ms(t.preprocess_us) + " ms"],
    ["encode", ms(t.encode_us) + " ms"], ["search", ms(t.search_us) + " ms"], ["hydrate", ms(t.hydrate_us) + " ms"],
    ["server total", ms(t.total_us) + " ms"],
  ];
  for (const [name, value] of parts) {
    const span = document.createElement("span");
    span.className = `plan-${name.replace(/ /g, "-")}`;
    const b = document.createElement("b");
    b.textContent = String(value);
    span.append(`${name} `, b, " · ");
    $("plan").append(span);
  }
  const next = $("next-page");
  next.hidden = !response.next_page_token;
  next.onclick = () => run(state.last, response.next_page_token);
  window.scrollTo(0, 0);
}

// --- the catalog -----------------------------------------------------------------------

function filterControl(name, kind) {
  const row = document.createElement("div");
  row.className = "attr";
  const label = document.createElement("span");
  label.textContent = `${name} (${kind})`;
  row.append(label);
  const input = (id, type, placeholder) => {
    const el = document.createElement("input");
    el.id = id;
    el.type = type;
    el.placeholder = placeholder;
    if (type === "number") el.step = "any";
    el.addEventListener("keydown", (e) => e.key === "Enter" && searchFromInputs());
    return el;
  };
  if (kind === "keyword") {
    row.append(input(`filter-${name}`, "text", "any of: a, b"));
  } else if (kind === "numeric" || kind === "timestamp") {
    const type = kind === "numeric" ? "number" : "date";
    row.append(input(`filter-${name}-min`, type, "min"), " – ", input(`filter-${name}-max`, type, "max"));
  } else if (kind === "bool") {
    const select = document.createElement("select");
    select.id = `filter-${name}`;
    for (const [value, text] of [["", "any"], ["yes", "yes"], ["no", "no"]]) select.add(new Option(text, value));
    row.append(select);
  }
  return row;
}

function statsEntry(list, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dd.id = `stat-${name.replace(/ /g, "-")}`;
  list.append(dt, dd);
}

async function loadStats() {
  let stats;
  try {
    stats = await call("SearchService/Stats", {});
  } catch (e) {
    showError(e.message);
    $("stats-line").textContent = "";
    return;
  }
  showError(null);
  const spaces = stats.spaces || [];
  $("stats-line").textContent = `${stats.products} products · model ${stats.model_id || "none"}`;
  const list = $("stats-list");
  list.replaceChildren();
  statsEntry(list, "products", stats.products);
  statsEntry(list, "model", stats.model_id || "none (vector queries only)");
  for (const s of spaces) {
    const encoders = [s.has_image_encoder && "photos", s.has_text_encoder && "words"].filter(Boolean).join(" + ");
    statsEntry(list, `space ${s.name}`, `${s.dim}-d ${s.metric}, ${s.index_kind}; ${encoders || "vectors only"}` +
      (s.name === stats.default_space ? " (default)" : ""));
  }
  statsEntry(list, "log records", `${stats.applied_seq} applied, ${stats.last_snapshot_seq} in a snapshot`);
  const using = $("using");
  const chosen = using.value;
  using.replaceChildren(new Option("default", ""), ...spaces.map((s) => new Option(s.name, s.name)));
  using.value = chosen;
  const schema = stats.attribute_schema || {};
  if (JSON.stringify(schema) !== JSON.stringify(state.schema)) {
    state.schema = schema;
    const fieldset = $("filters");
    fieldset.replaceChildren(fieldset.querySelector("legend"));
    const names = Object.keys(schema).sort();
    if (!names.length) fieldset.append("no attributes in the schema");
    for (const name of names) fieldset.append(filterControl(name, schema[name]));
  }
  loadJobs();
}

// The latest duplicate scan and re-index, refreshed every few seconds while one runs.
async function loadJobs() {
  const running = await Promise.all([
    jobStatus("scan-status", "DuplicatesService/GetScanStatus", (scan) =>
      `${scan.products_done} / ${scan.products_total} products, ${scan.pairs_found} pairs found` +
      (scan.error ? ` (${scan.error})` : ""), "SCAN_STATE_"),
    jobStatus("reindex-status", "AdminService/ReindexStatus", (job) =>
      `${job.done} / ${job.total} products, ${job.failed} failed, to ${job.model_id || "?"}` +
      (job.message ? ` (${job.message})` : ""), "JOB_STATE_"),
  ]);
  clearTimeout(state.jobsTimer);
  if (running.some(Boolean)) state.jobsTimer = setTimeout(loadJobs, 3000);
}

async function jobStatus(id, method, describe, statePrefix) {
  try {
    const job = await call(method, {});
    const where = job.state.replace(statePrefix, "").toLowerCase();
    $(id).textContent = `${where}: ${describe(job)}, ${Number(job.elapsed_seconds).toFixed(0)} s`;
    return where === "running";
  } catch (e) {
    // none yet, a router (no such service), or a key that may not see it
    $(id).textContent = /^(NOT_FOUND|UNIMPLEMENTED)/.test(e.message) ? "none"
      : e.message.startsWith("PERMISSION_DENIED") ? "shown to an API key with the write scope" : e.message;
    return false;
  }
}

// --- the photo -------------------------------------------------------------------------

function setPhoto(file) {
  state.photo = file || null;
  const preview = $("photo-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  preview.src = file ? URL.createObjectURL(file) : "";
  $("clear-photo").hidden = !file;
  $("drop-hint").hidden = Boolean(file);
  if (!file) $("photo").value = "";
  if (file) searchFromInputs();
}

function wire() {
  const key = $("api-key");
  key.value = localStorage.getItem("lookalike-api-key") || "";
  key.addEventListener("change", () => {
    localStorage.setItem("lookalike-api-key", key.value.trim());
    loadStats();
  });
  $("photo").addEventListener("change", (e) => setPhoto(e.target.files[0]));
  $("clear-photo").addEventListener("click", () => setPhoto(null));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) setPhoto(e.dataTransfer.files[0]);
  });
  $("text").addEventListener("keydown", (e) => e.key === "Enter" && searchFromInputs());
  $("search").addEventListener("click", searchFromInputs);
  $("weight").addEventListener("input", () => {
    const w = Number($("weight").value);
    $("weight-value").textContent = `${w} / ${100 - w}`;
  });
  loadStats();
}

wire();
