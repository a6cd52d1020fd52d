// The search page: text or a dropped image -> POST /v1/search -> a grid of thumbnails with scores.
// Plain browser JavaScript, no build step and nothing from the network but this server.
// URL parameters ?q=...&collection=...&k=... fill the form and search at once (shareable links).
// A server with API keys answers 401: the page then asks for a key, keeps it in localStorage and
// sends it as a Bearer token (thumbnails too, fetched as blobs since <img> sends no headers).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const KEY = "vistas-api-key";
const counts = {};  // collection name -> items, as listed when the page loaded
const addHelp = (name) => `POST items to /v1/collections/${name}/items (the SDK's add_items), or index a folder with ` +
  "`vistas index build --bundle BUNDLE --source DIR --out INDEX` and serve it with `vistas serve BUNDLE --index INDEX`.";

function authHeaders() {
  const key = localStorage.getItem(KEY);
  return key ? { authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (response.status === 401) {
    $("api-key").hidden = false;
    $("api-key").focus();
  }
  return response;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function itemPath(collection, id, kind) {
  // ids are often paths ("cats/01.jpg"): keep their slashes, encode each segment
  const segments = id.split("/").map(encodeURIComponent).join("/");
  return `/v1/collections/${encodeURIComponent(collection)}/${kind}/${segments}`;
}

// Fills the collection list; true when the page can search (a collection exists, and the one the
// URL names, if any, is among them).
async function loadCollections() {
  const select = $("collection");
  const response = await api("/v1/collections");
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  for (const c of body.collections) {
    const option = document.createElement("option");
    option.value = c.name;
    option.textContent = `${c.name} (${c.count})`;
    select.appendChild(option);
    counts[c.name] = c.count;
  }
  const names = body.collections.map((c) => c.name);
  if (names.length === 0) {
    setStatus(`This server has no collections yet. To search images, ${addHelp("NAME")}`);
    $("results").dataset.state = "empty";
    return false;
  }
  const wanted = params.get("collection");
  if (wanted !== null && !names.includes(wanted)) {
    // Searching another collection instead would show results for a question nobody asked.
    setStatus(`No collection "${wanted}" on this server; pick one of: ${names.join(", ")}.`, true);
    $("results").dataset.state = "error";
    return false;
  }
  select.value = wanted ?? (names.includes("default") ? "default" : names[0]);
  return true;
}

function resultCard(collection, hit) {
  const figure = document.createElement("figure");
  figure.className = "result";
  figure.dataset.id = hit.id;
  figure.dataset.score = hit.score;
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = hit.id;
  const src = itemPath(collection, hit.id, "images");
  if (localStorage.getItem(KEY)) {
    api(src).then((r) => (r.ok ? r.blob() : Promise.reject())).then((b) => { img.src = URL.createObjectURL(b); })
      .catch(() => img.onerror());
  } else {
    img.src = src;
  }
  img.onerror = () => {  // items added as vectors or texts have no thumbnail
    const box = document.createElement("div");
    box.className = "no-image";
    box.textContent = "no image";
    img.replaceWith(box);
  };
  const caption = document.createElement("figcaption");
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  caption.append(score);
  // What the item is, in words, when its metadata says: the batch job's `caption` (or a text
  // item's `text`) and a `label`.
  const meta = hit.metadata || {};
  for (const [cls, value] of [["label", meta.label], ["caption", meta.caption ?? meta.text]]) {
    if (typeof value !== "string" || !value) continue;
    const line = document.createElement("span");
    line.className = cls;
    line.textContent = value;
    line.title = value;
    caption.append(line);
  }
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = hit.id;
  id.title = JSON.stringify(hit.metadata);
  caption.append(id);
  figure.append(img, caption);
  return figure;
}

function resultsStatus(collection, n, ms) {
  if (n === 0 && counts[collection] === 0) return `"${collection}" has no items yet: ${addHelp(collection)}`;
  if (n === 0) return `No results in ${collection}.`;
  return `${n} result${n === 1 ? "" : "s"} from ${collection} in ${ms} ms`;
}

async function search(query) {
  const collection = $("collection").value;
  const results = $("results");
  if (!collection) {
    setStatus(`This server has no collections yet. To search images, ${addHelp("NAME")}`, true);
    return;
  }
  results.dataset.state = "searching";
  setStatus("Searching…");
  const started = performance.now();
  try {
    const response = await api("/v1/search", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ collection, k: Number($("k").value), ...query }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : response.statusText);
    results.replaceChildren(...body.results.map((hit) => resultCard(collection, hit)));
    setStatus(resultsStatus(collection, body.results.length, Math.round(performance.now() - started)));
    results.dataset.state = "done";
  } catch (err) {
    results.replaceChildren();
    setStatus(String(err.message || err), true);
    results.dataset.state = "error";
  }
}

function searchImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    setStatus("That is not an image file.", true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    $("query-image").src = reader.result;
    $("query-image").hidden = false;
    search({ image: reader.result });  // a data: URL; the server accepts the prefix
  };
  reader.readAsDataURL(file);
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text) search({ text });
});
$("file").addEventListener("change", () => searchImage($("file").files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  searchImage(event.dataTransfer.files[0]);
});

$("api-key").addEventListener("change", () => {
  localStorage.setItem(KEY, $("api-key").value.trim());
  $("collection").replaceChildren();
  start();
});

const start = () => loadCollections()
  .then((ready) => {
    if (!ready) return;
    const k = params.get("k");
    if (k && /^[1-9][0-9]*$/.test(k)) {
      if (![...$("k").options].some((o) => o.value === k)) $("k").add(new Option(k));
      $("k").value = k;
    }
    if (params.get("q")) {
      $("text").value = params.get("q");
      search({ text: params.get("q") });
    }
  })
  .catch((err) => setStatus(`Could not list collections: ${err.message}`, true));
start();
