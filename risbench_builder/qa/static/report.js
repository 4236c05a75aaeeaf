/* risbench report viewer: plain JavaScript, no framework, nothing fetched from the network.
 *
 * Browsers refuse fetch() on file://, so every data file under data/ is a script that calls
 * one of the RB.* registration functions below; load() adds the <script> tag on demand.
 * State (gallery, sort, filters, page, detail) lives in location.hash, so views are links.
 */
(function () {
  "use strict";
  var META = window.RB_META;
  var S = { items: null, galleries: {}, signals: {}, details: {} };
  var pending = {};
  var seq = 0;
  var RB = window.RB = {
    items: function (d) { S.items = d; },
    gallery: function (slug, d) { S.galleries[slug] = d; },
    signal: function (name, values) { S.signals[name] = values; },
    detail: function (chunk, records) { S.details[chunk] = records; },
    state: null, view: [], ready: 0, detailOpen: "", errors: []
  };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function load(src) {
    if (!pending[src]) {
      pending[src] = new Promise(function (resolve, reject) {
        var s = el("script", { src: src });
        s.onload = function () { resolve(); };
        s.onerror = function () { delete pending[src]; reject(new Error("cannot load " + src)); };
        document.head.appendChild(s);
      });
    }
    return pending[src];
  }
  function gallery(slug) {
    for (var i = 0; i < META.galleries.length; i++) { if (META.galleries[i].slug === slug) { return META.galleries[i]; } }
    return null;
  }
  function fmt(v) {
    if (v === null || v === undefined) { return "–"; }
    if (typeof v !== "number") { return String(v); }
    return Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(3);
  }
  function thumbSrc(key) { return "thumbs/" + key.slice(0, 2) + "/" + key + ".jpg"; }

  /* ---------------------------------------------------------------- state <-> hash */
  function defaultGallery() {
    var review = gallery("review");
    if (review && review.count) { return review; }
    for (var i = 0; i < META.galleries.length; i++) {
      if (META.galleries[i].count || META.galleries[i].texts) { return META.galleries[i]; }
    }
    return META.galleries[0];
  }
  function parseHash() {
    var text = location.hash.slice(1);
    var p = new URLSearchParams(text.indexOf("=") >= 0 ? text : "");
    var g = gallery(p.get("g")) || defaultGallery();
    return {
      g: g.slug, sort: p.has("sort") ? p.get("sort") : g.sort, order: p.get("order") || g.order || "asc",
      cat: p.get("cat") || "", split: p.get("split") || "",
      page: Math.max(0, (parseInt(p.get("page") || "1", 10) || 1) - 1), detail: p.get("detail") || ""
    };
  }
  function hashOf(st) {
    var p = new URLSearchParams();
    p.set("g", st.g);
    if (st.sort) { p.set("sort", st.sort); p.set("order", st.order); }
    if (st.cat) { p.set("cat", st.cat); }
    if (st.split) { p.set("split", st.split); }
    if (st.page) { p.set("page", String(st.page + 1)); }
    if (st.detail) { p.set("detail", st.detail); }
    return "#" + p.toString();
  }
  function update(change) {
    var st = Object.assign({}, RB.state, change);
    if (!("page" in change)) { st.page = 0; }
    RB.state = st;
    history.replaceState(null, "", hashOf(st));
    return render();
  }

  /* ---------------------------------------------------------------- controls */
  function options(select, values, first) {
    select.replaceChildren();
    if (first) { select.appendChild(el("option", { value: "" }, first)); }
    values.forEach(function (v) { select.appendChild(el("option", { value: v }, v)); });
  }
  function setup() {
    var tabs = $("tabs");
    META.galleries.forEach(function (g) {
      var n = g.count + g.text_total;
      var b = el("button", { type: "button", "data-g": g.slug, role: "tab", title: g.note }, g.title + " (" + n.toLocaleString("en") + ")");
      if (!n) { b.className = "empty"; }
      b.onclick = function () { update({ g: g.slug, sort: g.sort, order: g.order || "asc", detail: "" }); };
      tabs.appendChild(b);
    });
    options($("sort"), META.signals.map(function (s) { return s.name; }), "catalog order");
    options($("cat"), META.categories, "all categories");
    options($("split"), META.splits, "all splits");
    $("sort").onchange = function () { update({ sort: this.value }); };
    $("order").onchange = function () { update({ order: this.value }); };
    $("cat").onchange = function () { update({ cat: this.value }); };
    $("split").onchange = function () { update({ split: this.value }); };
    $("prev").onclick = function () { update({ page: RB.state.page - 1 }); };
    $("next").onclick = function () { update({ page: RB.state.page + 1 }); };
    $("grid").onclick = function (ev) {
      var card = ev.target.closest(".thumb");
      if (card) { openDetail(parseInt(card.getAttribute("data-idx"), 10)); }
    };
    $("dclose").onclick = closeDetail;
    $("detail").onclick = function (ev) { if (ev.target === this) { closeDetail(); } };
    $("dprev").onclick = function () { step(-1); };
    $("dnext").onclick = function () { step(1); };
    $("zoom").onchange = function () { userZoom = true; sizeStage(); };
    window.addEventListener("resize", sizeStage);
    document.addEventListener("keydown", function (ev) {
      if ($("detail").hidden) { return; }
      if (ev.key === "Escape") { closeDetail(); }
      if (ev.key === "ArrowLeft") { step(-1); }
      if (ev.key === "ArrowRight") { step(1); }
    });
    window.addEventListener("hashchange", function () {
      RB.state = parseHash();
      render();
      if (location.hash.indexOf("g=") >= 0) { $("galleries").scrollIntoView(); }
    });
  }

  /* ---------------------------------------------------------------- gallery */
  function filtered(st, data) {
    var items = S.items;
    var cat = st.cat ? META.categories.indexOf(st.cat) : null;    /* unknown name: -1 matches nothing */
    var split = st.split ? META.splits.indexOf(st.split) : null;
    var list = data.items.filter(function (i) {
      return (cat === null || items.cat[i] === cat) && (split === null || items.split[i] === split);
    });
    if (st.sort && S.signals[st.sort]) {
      var v = S.signals[st.sort], dir = st.order === "desc" ? -1 : 1;
      list.sort(function (a, b) {   /* missing values last, ties in catalog order */
        var x = v[a], y = v[b];
        if (x === null) { return y === null ? a - b : 1; }
        if (y === null) { return -1; }
        return (x - y) * dir || a - b;
      });
    }
    return list;
  }
  function card(i, st) {
    var items = S.items, key = items.key[i], route = META.routes[items.route[i]];
    var fig = el("figure", { "class": "thumb", "data-idx": i, "data-id": items.id[i],
      "data-cat": META.categories[items.cat[i]], "data-split": META.splits[items.split[i]], title: items.id[i] });
    var img = el("img", { src: thumbSrc(key), width: 128, height: 128, loading: "lazy", decoding: "async", alt: items.id[i] });
    fig.appendChild(img);
    var text = META.categories[items.cat[i]];
    if (st.sort && S.signals[st.sort]) {
      var v = S.signals[st.sort][i];
      fig.setAttribute("data-value", v === null ? "" : String(v));
      text = st.sort + " " + fmt(v) + " · " + text;
    }
    fig.appendChild(el("figcaption", {}, text));
    if (route === "accept" || route === "review") { fig.appendChild(el("span", { "class": "dot " + route, title: route })); }
    return fig;
  }
  function controls(st, g) {
    document.querySelectorAll("#tabs button").forEach(function (b) {
      b.classList.toggle("on", b.getAttribute("data-g") === st.g);
    });
    $("sort").value = st.sort;
    $("order").value = st.order;
    $("order").disabled = !st.sort;
    $("cat").value = st.cat;
    $("split").value = st.split;
    $("gnote").textContent = g.title + ": " + g.note;
  }
  function render() {
    var st = RB.state, g = gallery(st.g), my = ++seq;
    controls(st, g);
    var sig = null;
    META.signals.forEach(function (s) { if (s.name === st.sort) { sig = s; } });
    var loads = [load("data/items.js"), load(g.file)];
    if (sig) { loads.push(load(sig.file)); }
    return Promise.all(loads).then(function () {
      if (my !== seq) { return; }
      var data = S.galleries[g.slug];
      var list = filtered(st, data);
      var size = META.page_size, pages = Math.max(1, Math.ceil(list.length / size));
      if (st.page > pages - 1) { st.page = pages - 1; }
      RB.view = list;
      var frag = document.createDocumentFragment();
      list.slice(st.page * size, (st.page + 1) * size).forEach(function (i) { frag.appendChild(card(i, st)); });
      $("grid").replaceChildren(frag);
      var from = list.length ? st.page * size + 1 : 0, to = Math.min(list.length, (st.page + 1) * size);
      $("pageinfo").textContent = from.toLocaleString("en") + "–" + to.toLocaleString("en") + " of " +
        list.length.toLocaleString("en") + (list.length !== data.items.length ? " (filtered from " +
        data.items.length.toLocaleString("en") + ")" : "") + " · page " + (st.page + 1) + "/" + pages;
      $("prev").disabled = st.page <= 0;
      $("next").disabled = st.page >= pages - 1;
      texts(g, data);
      if (st.detail && RB.detailOpen !== st.detail) {
        var idx = S.items.id.indexOf(st.detail);
        if (idx >= 0) { return openDetail(idx).then(done); }
      } else if (!st.detail && RB.detailOpen) {
        hideDetail();
      }
      done();
      function done() { RB.ready = my; document.body.setAttribute("data-ready", String(my)); }
    }).catch(function (err) {
      RB.errors.push(String(err));
      $("gnote").textContent = "could not load this gallery: " + err.message;
    });
  }
  function texts(g, data) {
    var box = $("textbox"), ul = $("texts");
    ul.replaceChildren();
    if (!data.texts.length) { box.className = "none"; return; }
    box.className = "";
    $("texthead").textContent = data.texts.length.toLocaleString("en") + (g.text_total > data.texts.length ?
      " of " + g.text_total.toLocaleString("en") : "") + " rejects that are not triplets (no image to show)";
    var frag = document.createDocumentFragment();
    data.texts.forEach(function (t) {
      var li = el("li");
      li.appendChild(el("code", {}, t[0]));
      li.appendChild(document.createTextNode(" " + t[1]));
      frag.appendChild(li);
    });
    ul.appendChild(frag);
  }

  /* ---------------------------------------------------------------- detail */
  var current = null;
  var userZoom = false;   /* until the user picks a zoom, small objects open zoomed in */
  function chunkFile(c) { return "data/detail-" + String(c).padStart(5, "0") + ".js"; }
  function openDetail(idx) {
    var c = Math.floor(idx / META.detail_chunk);
    return load(chunkFile(c)).then(function () {
      var d = S.details[c][idx - c * META.detail_chunk];
      current = { idx: idx, d: d };
      showDetail(d);
      RB.detailOpen = d.id;
      if (RB.state.detail !== d.id) {
        RB.state.detail = d.id;
        history.replaceState(null, "", hashOf(RB.state));
      }
    }).catch(function (err) { RB.errors.push(String(err)); });
  }
  function hideDetail() { $("detail").hidden = true; RB.detailOpen = ""; current = null; }
  function closeDetail() {
    hideDetail();
    RB.state.detail = "";
    history.replaceState(null, "", hashOf(RB.state));
  }
  function step(delta) {
    if (!current) { return; }
    var pos = RB.view.indexOf(current.idx);
    var next = RB.view[pos + delta];
    if (pos >= 0 && next !== undefined) { openDetail(next); }
  }
  function sizeStage() {
    if (!current) { return; }
    var d = current.d, stage = $("stage"), vp = $("viewport"), zoom = $("zoom").value;
    var vw = vp.clientWidth, vh = vp.clientHeight, fit = Math.min(vw / d.W, vh / d.H), scale = fit;
    var bw = Math.max(d.box[2] - d.box[0], 8), bh = Math.max(d.box[3] - d.box[1], 8);
    if (zoom === "object") { scale = Math.max(fit, Math.min(8, vw / (3 * bw), vh / (3 * bh))); }
    else if (zoom !== "fit") { scale = parseFloat(zoom); }
    stage.style.width = Math.max(16, Math.floor(d.W * scale)) + "px";
    stage.style.height = Math.max(16, Math.floor(d.H * scale)) + "px";
    stage.classList.toggle("pixels", scale >= 2);   /* see the pixels the mask was drawn on */
    vp.scrollLeft = Math.max(0, ((d.box[0] + d.box[2]) / 2) * scale - vw / 2);   /* the object in the middle */
    vp.scrollTop = Math.max(0, ((d.box[1] + d.box[3]) / 2) * scale - vh / 2);
  }
  function pct(v, total) { return (100 * v / total) + "%"; }
  function showDetail(d) {
    $("detail").hidden = false;
    if (!userZoom) {
      var small = Math.max(d.box[2] - d.box[0], d.box[3] - d.box[1]) < 0.25 * Math.max(d.W, d.H);
      $("zoom").value = small ? "object" : "fit";
    }
    $("dtitle").textContent = d.category + " · " + d.id;
    var stage = $("stage"), toggles = $("toggles");
    stage.replaceChildren();
    toggles.replaceChildren();
    var base = el("img", { "class": "base", src: d.image, alt: d.image_path });
    base.onerror = function () {
      stage.replaceChild(el("div", { "class": "missing" }, "image not readable from here: " + d.image_path), base);
    };
    stage.appendChild(base);
    function toggle(name, color, nodes) {
      var label = el("label"), box = el("input", { type: "checkbox" });
      box.checked = true;
      box.onchange = function () { nodes.forEach(function (n) { n.style.display = box.checked ? "" : "none"; }); };
      label.appendChild(box);
      var sw = el("span", { "class": "sw" });
      sw.style.background = color;
      label.appendChild(sw);
      label.appendChild(document.createTextNode(name));
      toggles.appendChild(label);
    }
    d.layers.forEach(function (l) {
      var img = el("img", { "class": "layer", src: l.src, alt: l.name, "data-layer": l.name });
      img.style.left = pct(l.x, d.W); img.style.top = pct(l.y, d.H);
      img.style.width = pct(l.w, d.W); img.style.height = pct(l.h, d.H);
      stage.appendChild(img);
      toggle(l.name, l.color, [img]);
    });
    var NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + d.W + " " + d.H);
    svg.setAttribute("preserveAspectRatio", "none");
    function shape(tag, attrs, color) {
      var s = document.createElementNS(NS, tag);
      for (var k in attrs) { s.setAttribute(k, attrs[k]); }
      s.setAttribute("fill", "none"); s.setAttribute("stroke", color); s.setAttribute("stroke-width", "2");
      s.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(s);
      return s;
    }
    if (d.polygon) {
      var poly = shape("polygon", { points: d.polygon.map(function (p) { return p[0] + "," + p[1]; }).join(" ") }, "#ff8c00");
      toggle("OBB polygon", "#ff8c00", [poly]);
    }
    var b = d.box;
    var rect = shape("rect", { x: b[0], y: b[1], width: b[2] - b[0], height: b[3] - b[1] }, "#ffff00");
    toggle("prompt box", "#ffff00", [rect]);
    stage.appendChild(svg);
    fields(d);
    sizeStage();
  }
  function fields(d) {
    var box = $("fields");
    box.replaceChildren();
    box.appendChild(el("p", { "class": "expr" }, "“" + (d.expression || "(no expression)") + "”"));
    var t = el("table", { "class": "fields" });
    function row(name, value, cls) {
      var tr = el("tr");
      tr.appendChild(el("th", {}, name));
      var td = el("td", cls ? { "class": cls } : {});
      if (value instanceof Node) { td.appendChild(value); } else { td.textContent = value === null || value === undefined ? "–" : String(value); }
      tr.appendChild(td);
      t.appendChild(tr);
    }
    row("triplet", d.id);
    row("category", d.category);
    row("split", d.split + (d.origin_split && d.origin_split !== d.split ? " (source: " + d.origin_split + ")" : ""));
    row("source", d.source + " · " + d.ref);
    row("box", d.box.map(function (v) { return Math.round(v * 10) / 10; }).join(", "));
    var link = el("a", { href: d.image }, d.image_path);
    row("image", link);
    row("size", d.W + " × " + d.H);
    if (d.proposal) {
      var p = d.proposal;
      row("route", p.route);
      if (p.failed && p.failed.length) { row("fails", p.failed.join(", "), "fail"); }
      row("segmenter", p.segmenter + (p.model_sha256 ? " · " + p.model_sha256 : ""));
      Object.keys(p.scores).sort().forEach(function (k) { row(k, fmt(p.scores[k])); });
    } else {
      row("proposal", "none yet (sam-refine has not run for this triplet)");
    }
    d.reviews.forEach(function (r) {
      row("review " + r.annotator, r.verdict + (r.corrected_expression ? " · corrected: “" + r.corrected_expression + "”" : ""));
    });
    if (d.consensus) { row("consensus", d.consensus.decision + " · agreement " + fmt(d.consensus.agreement)); }
    if (d.final) { row("final", d.final.split + " (" + d.final.mask_origin + ")"); }
    d.rejects.forEach(function (r) { row("rejected at " + r[0], r[1] + (r[2] ? ": " + r[2] : ""), "fail"); });
    d.contradictions.forEach(function (c) { row("contradiction", "“" + c.word + "”: " + c.reason, "fail"); });
    (d.audit || []).forEach(function (a) { row("audit " + a[0], a[1], "fail"); });
    row("attributes", el("pre", {}, JSON.stringify(d.attributes, null, 1)));
    row("render", el("code", {}, d.show));
    box.appendChild(t);
  }

  /* ---------------------------------------------------------------- start */
  setup();
  RB.state = parseHash();
  render();
})();
