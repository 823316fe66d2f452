/* BIM models in the viewer: the buildings tileset (/tiles/buildings/tileset.json, when the service has one) as a
 * second Cesium3DTileset, the list of BIM submissions (GET /api/bim/submissions) and, for the one selected, its
 * elements coloured by check result (GET /api/bim/submissions/{id}/elements?f=geojson: failed red, warning amber,
 * passed green, everything else white = its own colour). Colours are set per feature (feature.color) as tile
 * contents load or become visible — no style expression over thousands of GlobalIds. Picking a building element
 * shows its attributes in the existing panel (viewer.js) plus its check status and findings. Without a buildings
 * tileset the selected model's footprints are drawn as extruded polygons instead.
 * Load after viewer.js (and analysis.js: the pick hook chains the one already set).
 * For tests: window.cimViewer.bim = {tileset, ready, loadSubmissions() -> [submission],
 *   showSubmission(id, {fly}) -> {coloured, failed, warning, passed, elements, features, tilesVersion},
 *   flyToModel(), findingsOf(globalId), clear()}. */
/* global Cesium */
(function () {
  'use strict';

  const cim = window.cimViewer;
  const viewer = cim.viewer;
  const scene = viewer.scene;
  const $ = (id) => document.getElementById(id);

  const TILESET_URL = '/tiles/buildings/tileset.json';
  const API = '/api/bim/submissions';
  const STATUS_COLOURS = { failed: '#ff3b30', warning: '#ffb300', passed: '#34c759' };
  // passed elements turn translucent so that the failed ones inside, or below ground, stand out
  const STATUS_ALPHA = { failed: 1.0, warning: 0.9, passed: 0.35 };
  const PICKED = Cesium.Color.YELLOW;
  const STAGES = { drawing_review: '施工图审查', handover: '竣工交付' };
  const STATUSES = {
    submitted: '已提交 submitted', checked: '已检查 checked', passed: '通过 passed', failed: '未通过 failed',
    accepted: '已接收 accepted', rejected: '已退回 rejected',
  };
  const CHECK_NAMES = { failed: '不通过 failed', warning: '警告 warning', passed: '通过 passed' };
  const colourOf = (status) => (STATUS_COLOURS[status]
    ? Cesium.Color.fromCssColorString(STATUS_COLOURS[status]).withAlpha(STATUS_ALPHA[status]) : Cesium.Color.WHITE);

  const state = {
    tileset: null,
    submissions: [],
    selected: null, // the submission shown
    dataset: null, // its dataset id: only features of this dataset take status colours
    status: new Map(), // global_id -> failed | warning | passed
    elements: new Map(), // global_id -> elements GeoJSON properties
    findings: null, // global_id -> [finding], fetched with the submission
    bounds: null, // BoundingSphere of the selected model
    generation: 0, // bumped on every new colouring: contents repaint once per generation
    picked: null, // global_id highlighted by a pick
    tilesVersion: null,
  };
  const painted = new WeakMap(); // tile content -> generation painted
  const contents = new Set(); // loaded tile contents with features
  const footprints = new Cesium.CustomDataSource('bim-footprints');
  viewer.dataSources.add(footprints);

  async function getJSON(url) {
    const res = await fetch(url);
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(`${url}: ${res.status} ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
    }
    return res.json();
  }

  async function exists(url) {
    try {
      let res = await fetch(url, { method: 'HEAD' });
      if (res.status === 405) res = await fetch(url);
      return res.ok;
    } catch (e) {
      return false;
    }
  }

  // -- colouring ---------------------------------------------------------------------------------------------
  function featureColour(feature) {
    const gid = feature.getProperty('global_id');
    if (gid !== undefined && gid === state.picked) return { colour: PICKED, status: null };
    if (!state.dataset || feature.getProperty('dataset') !== state.dataset) return { colour: Cesium.Color.WHITE, status: null };
    const status = state.status.get(gid);
    return { colour: colourOf(status), status: status || null };
  }

  /** Set every feature's colour in one tile content; returns how many took a status colour. */
  function paint(content) {
    let coloured = 0;
    for (let i = 0; i < content.featuresLength; i++) {
      const feature = content.getFeature(i);
      const { colour, status } = featureColour(feature);
      feature.color = colour;
      if (status) coloured += 1;
    }
    painted.set(content, state.generation);
    return coloured;
  }

  function repaintAll() {
    state.generation += 1;
    let coloured = 0;
    for (const content of contents) coloured += paint(content);
    return coloured;
  }

  function track(tileset) {
    tileset.tileLoad.addEventListener((tile) => {
      if (tile.content && tile.content.featuresLength > 0) { contents.add(tile.content); paint(tile.content); }
    });
    tileset.tileUnload.addEventListener((tile) => { if (tile.content) contents.delete(tile.content); });
    tileset.tileVisible.addEventListener((tile) => {
      const content = tile.content;
      if (content && content.featuresLength > 0 && painted.get(content) !== state.generation) {
        contents.add(content);
        paint(content);
      }
    });
  }

  // -- footprints when there is no buildings tileset ---------------------------------------------------------
  function drawFootprints(fc) {
    footprints.entities.removeAll();
    if (state.tileset) return;
    footprints.entities.suspendEvents();
    for (const f of fc.features || []) {
      const p = f.properties || {};
      if (!f.geometry || f.geometry.type !== 'Polygon' || p.ifc_class === 'IfcSpace') continue;
      const ring = f.geometry.coordinates[0];
      const bottom = Number.isFinite(p.bottom_eh) ? p.bottom_eh : 0;
      const top = Number.isFinite(p.top_eh) ? p.top_eh : bottom + 0.1;
      footprints.entities.add({
        properties: p,
        polygon: {
          hierarchy: ring.map((c) => Cesium.Cartesian3.fromDegrees(c[0], c[1])),
          height: bottom, extrudedHeight: Math.max(top, bottom + 0.05),
          material: colourOf(p.status).withAlpha(p.status === 'failed' ? 0.9 : 0.45), outline: false,
        },
      });
    }
    footprints.entities.resumeEvents();
  }

  /** Bounding sphere of the selected model from its element footprints (ellipsoidal heights). */
  function modelSphere(fc) {
    const points = [];
    for (const f of fc.features || []) {
      const p = f.properties || {};
      if (!f.geometry || f.geometry.type !== 'Polygon') continue;
      for (const c of f.geometry.coordinates[0]) {
        if (Number.isFinite(p.bottom_eh)) points.push(Cesium.Cartesian3.fromDegrees(c[0], c[1], p.bottom_eh));
        if (Number.isFinite(p.top_eh)) points.push(Cesium.Cartesian3.fromDegrees(c[0], c[1], p.top_eh));
      }
    }
    return points.length ? Cesium.BoundingSphere.fromPoints(points) : null;
  }

  function waitForTiles(timeoutMs = 30000) {
    const tileset = state.tileset;
    if (!tileset) return Promise.resolve(false);
    return new Promise((resolve) => {
      let frames = 0;
      const start = performance.now();
      const remove = scene.postRender.addEventListener(() => {
        frames += 1;
        if (frames > 3 && tileset.tilesLoaded) { remove(); resolve(true); }
        else if (performance.now() - start > timeoutMs) { remove(); resolve(false); }
      });
    });
  }

  function flyToModel(duration = 1.5) {
    const sphere = state.bounds || (state.tileset ? state.tileset.boundingSphere : null);
    if (!sphere) return Promise.resolve(false);
    return new Promise((resolve) => {
      viewer.camera.flyToBoundingSphere(sphere, {
        // from the south-west, over the street in front of the building: its pipes in the foreground
        offset: new Cesium.HeadingPitchRange(Cesium.Math.toRadians(65), Cesium.Math.toRadians(-28), Math.max(sphere.radius * 2.6, 40)),
        duration, complete: () => resolve(true), cancel: () => resolve(false),
      });
    });
  }

  // -- submissions -------------------------------------------------------------------------------------------
  function label(sub) {
    return `${sub.id} · ${sub.project} · ${STAGES[sub.stage] || sub.stage} · ${STATUSES[sub.status] || sub.status}`;
  }

  function renderList() {
    const list = $('bim-submissions');
    if (!list) return;
    list.replaceChildren();
    for (const sub of state.submissions) {
      const li = document.createElement('li');
      li.dataset.id = sub.id;
      li.textContent = label(sub);
      li.title = `${sub.file_name || ''} v${sub.version} · ${sub.submitted_by || ''} ${sub.submitted_at || ''}`.trim();
      li.style.cursor = 'pointer';
      if (state.selected && state.selected.id === sub.id) { li.className = 'selected'; li.style.background = '#3b4f62'; }
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = sub.status === 'failed' || sub.status === 'rejected' ? STATUS_COLOURS.failed
        : sub.status === 'passed' || sub.status === 'accepted' ? STATUS_COLOURS.passed : '#9fb0c0';
      li.prepend(swatch);
      li.addEventListener('click', () => showSubmission(sub.id).catch((e) => cim.status(e.message, true)));
      list.appendChild(li);
    }
    if (!state.submissions.length) {
      const li = document.createElement('li');
      li.className = 'none';
      li.textContent = '暂无报审 no submissions';
      list.appendChild(li);
    }
  }

  async function loadSubmissions() {
    state.submissions = await getJSON(API);
    renderList();
    return state.submissions;
  }

  function renderSummary(counts) {
    const box = $('bim-summary');
    if (!box) return;
    const sub = state.selected;
    const parts = ['failed', 'warning', 'passed'].map((s) => `<span class="swatch" style="background:${STATUS_COLOURS[s]}"></span>${CHECK_NAMES[s]} ${counts[s]}`);
    box.innerHTML = '';
    const p = document.createElement('p');
    p.className = 'legend';
    p.innerHTML = parts.join(' ');
    const head = document.createElement('p');
    head.textContent = `${sub.project} v${sub.version} · ${STAGES[sub.stage] || sub.stage} · ${STATUSES[sub.status] || sub.status}`
      + (counts.model ? ` · 模型级问题 model-level findings ${counts.model}` : '');
    box.append(head, p);
    if (state.tilesVersion !== null && state.tilesVersion !== sub.version) {
      const w = document.createElement('p');
      w.className = 'warning';
      w.textContent = `⚠ 三维瓦片为第 ${state.tilesVersion} 版，报审为第 ${sub.version} 版 / tiles show version ${state.tilesVersion}`;
      box.appendChild(w);
    }
  }

  /** The model version the tileset shows for a dataset (from loaded features), or null. */
  function tilesVersionOf(dataset) {
    for (const content of contents) {
      for (let i = 0; i < content.featuresLength; i++) {
        const f = content.getFeature(i);
        if (f.getProperty('dataset') === dataset) return f.getProperty('version');
      }
    }
    return null;
  }

  async function showSubmission(id, { fly = true } = {}) {
    const [fc, detail] = await Promise.all([
      getJSON(`${API}/${encodeURIComponent(id)}/elements?f=geojson`),
      getJSON(`${API}/${encodeURIComponent(id)}`).catch(() => null),
    ]);
    const sub = (detail && detail.submission) || state.submissions.find((s) => s.id === id) || { id, ...(fc.submission || {}) };
    state.selected = { ...sub, ...(fc.submission || {}) };
    state.dataset = state.selected.dataset_id;
    state.status = new Map();
    state.elements = new Map();
    const counts = { failed: 0, warning: 0, passed: 0, model: fc.model_findings_total || 0 };
    for (const f of fc.features || []) {
      const p = f.properties || {};
      if (!p.global_id) continue;
      state.status.set(p.global_id, p.status);
      state.elements.set(p.global_id, p);
      if (counts[p.status] !== undefined) counts[p.status] += 1;
    }
    state.findings = new Map();
    for (const finding of (detail && detail.findings) || []) {
      if (!finding.global_id) continue;
      if (!state.findings.has(finding.global_id)) state.findings.set(finding.global_id, []);
      state.findings.get(finding.global_id).push(finding);
    }
    state.bounds = modelSphere(fc);
    state.picked = null;
    drawFootprints(fc);
    renderList();
    let coloured = repaintAll();
    if (fly) {
      await flyToModel(1.0);
      await waitForTiles();
      coloured = repaintAll();
    }
    state.tilesVersion = state.tileset ? tilesVersionOf(state.dataset) : null;
    renderSummary(counts);
    cim.status(`BIM ${state.selected.id}: ${counts.failed} 不通过, ${counts.warning} 警告, ${counts.passed} 通过`);
    return {
      coloured, failed: counts.failed, warning: counts.warning, passed: counts.passed,
      elements: state.status.size, features: (fc.features || []).length, tilesVersion: state.tilesVersion,
    };
  }

  function clear() {
    state.selected = null;
    state.dataset = null;
    state.status = new Map();
    state.elements = new Map();
    state.findings = null;
    state.bounds = null;
    state.picked = null;
    footprints.entities.removeAll();
    repaintAll();
    renderList();
    const box = $('bim-summary');
    if (box) box.replaceChildren();
  }

  function findingsOf(gid) {
    return (state.findings && state.findings.get(gid)) || [];
  }

  // -- picking: the attribute panel gets the element's check status and findings ---------------------------------
  function addRow(th, td, colour) {
    const table = $('attrs');
    if (!table) return;
    const tr = document.createElement('tr');
    const h = document.createElement('th');
    const d = document.createElement('td');
    h.textContent = th;
    d.textContent = td;
    if (colour) d.style.color = colour;
    tr.append(h, d);
    table.appendChild(tr);
  }

  function onBimPick(picked) {
    const props = picked && picked.properties;
    const gid = props && props.global_id;
    const isElement = gid !== undefined && gid !== null && props.ifc_class !== undefined;
    const previous = state.picked;
    state.picked = isElement && picked.source === 'tiles' ? gid : null;
    if (previous !== state.picked) repaintAll();
    if (!isElement) return;
    $('info-title').textContent = 'BIM 构件 element';
    const element = state.elements.get(gid);
    if (!state.selected) { addRow('检查结果 check', '未选择报审 no submission selected'); return; }
    if (!element) {
      addRow('检查结果 check', state.dataset && props.dataset && props.dataset !== state.dataset
        ? `不属于 ${state.selected.id} / not in this submission` : '本版本无此构件 not in this version');
      return;
    }
    addRow('检查结果 check', CHECK_NAMES[element.status] || element.status, STATUS_COLOURS[element.status]);
    const found = findingsOf(gid);
    if (found.length) {
      for (const f of found) addRow(`${f.severity} ${f.rule_id}`, f.message, f.severity === 'error' ? STATUS_COLOURS.failed : STATUS_COLOURS.warning);
    } else if (element.rules && element.rules.length) {
      addRow('规则 rules', element.rules.join(', '));
    }
  }

  const previousPick = cim.onPick;
  cim.onPick = (picked) => {
    if (previousPick) previousPick(picked);
    onBimPick(picked);
  };

  // -- start -------------------------------------------------------------------------------------------------
  async function loadTileset() {
    if (!(await exists(TILESET_URL))) return null;
    const tileset = await Cesium.Cesium3DTileset.fromUrl(TILESET_URL);
    tileset.colorBlendMode = Cesium.Cesium3DTileColorBlendMode.HIGHLIGHT; // white keeps the model's own colours
    track(tileset);
    tileset.tileFailed.addEventListener((e) => cim.status(`building tile failed: ${e.url}`, true));
    scene.primitives.add(tileset);
    state.tileset = tileset;
    api.tileset = tileset;
    return tileset;
  }

  async function init() {
    await Promise.resolve(cim.ready).catch(() => null); // the pipe viewer sets the camera first
    await loadTileset().catch((e) => cim.status(`建筑模型不可用 buildings unavailable: ${e.message}`, true));
    await loadSubmissions().catch((e) => cim.status(`BIM 报审列表不可用 submissions unavailable: ${e.message}`, true));
    return api;
  }

  const on = (id, event, fn) => { const el = $(id); if (el) el.addEventListener(event, fn); };
  on('bim-refresh', 'click', () => loadSubmissions().catch((e) => cim.status(e.message, true)));
  on('bim-fly', 'click', () => flyToModel());
  on('bim-toggle', 'change', (e) => {
    if (state.tileset) state.tileset.show = e.target.checked;
    footprints.show = e.target.checked;
  });

  const api = {
    tileset: null, ready: null, loadSubmissions, showSubmission, flyToModel, findingsOf, clear, state,
  };
  cim.bim = api;
  api.ready = init();
})();
