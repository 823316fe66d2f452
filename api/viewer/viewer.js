/* The planners' pipe viewer: CesiumJS served locally (no Cesium ion, no internet), the pipe tileset under a
 * translucent ground surveyed from the manhole covers, category switches, under-ground view, attributes on click,
 * search and fly-to, QC findings as markers.
 * For tests: window.cimViewer = {viewer, tileset, ready, stats, whenTilesLoaded, search, goUnderground, ...}
 * and window.cimPick(x, y) -> {source, id, properties, position} | null (window pixels). */
/* global Cesium */
(function () {
  'use strict';

  const CATEGORIES = [
    ['JS', '给水', '#00ffff'], ['PS', '排水', '#4c3926'], ['RQ', '燃气', '#ff00ff'], ['RL', '热力', '#ff8000'],
    ['DL', '电力', '#ff0000'], ['TX', '通信', '#00ff00'], ['GY', '工业', '#000000'], ['QT', '其他', '#6600cc'],
  ];
  const CATEGORY_NAME = Object.fromEntries(CATEGORIES.map(([code, zh]) => [code, zh]));
  const LABELS = {
    id: '编号 ID', dataset: '数据集', kind: '要素', category: '管线类别', subtype: '小类', point_type: '附属物',
    material: '材质', size: '管径/断面 (mm)', burial: '埋设方式', start_depth: '起点埋深 (m)', end_depth: '终点埋深 (m)',
    start_elevation: '起点高程 (m)', end_elevation: '终点高程 (m)', ground_elevation: '地面高程 (m)',
    well_depth: '井深 (m)', owner: '权属单位', year: '建设年代', road: '所在道路', qc_flags: '质检标记',
    rule_id: '质检规则', severity: '严重程度', message: '说明', feature_id: '要素编号', field: '字段', value: '值',
    file: '文件', row: '行',
  };
  const KIND = { segment: '管线段 segment', point: '管线点 point' };
  const SEVERITY = { error: '#ff3b30', warning: '#ffcc00', info: '#4fc3f7' };
  const TILESET_URL = '/tiles/pipes/tileset.json';

  const $ = (id) => document.getElementById(id);
  const status = (text, error = false) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };

  Cesium.Ion.defaultAccessToken = undefined; // nothing may reach Cesium ion
  const viewer = new Cesium.Viewer('cesium', {
    baseLayer: false, baseLayerPicker: false, geocoder: false, homeButton: false, sceneModePicker: false,
    navigationHelpButton: false, animation: false, timeline: false, fullscreenButton: false, infoBox: false,
    selectionIndicator: false, requestRenderMode: false, terrainProvider: new Cesium.EllipsoidTerrainProvider(),
  });
  const scene = viewer.scene;
  const globe = scene.globe;
  globe.baseColor = Cesium.Color.fromCssColorString('#8c9a78');
  globe.showGroundAtmosphere = false;
  globe.translucency.enabled = true;
  globe.translucency.frontFaceAlpha = 0.4;
  globe.translucency.backFaceAlpha = 0.5;
  globe.undergroundColor = Cesium.Color.fromCssColorString('#3d342b');
  globe.maximumScreenSpaceError = 4; // a flat local ground needs few terrain tiles
  scene.screenSpaceCameraController.enableCollisionDetection = false;
  scene.fog.enabled = false;
  scene.skyBox.show = false; // no stars through the translucent ground
  scene.backgroundColor = Cesium.Color.fromCssColorString('#3a3129'); // soil below the ground

  const stats = { tilesLoaded: 0, allTilesLoaded: 0, tilesVisible: 0, qcFindings: 0, ground: null };
  const visible = new Set(); // tile contents drawn at least once
  const state = { shown: new Set(CATEGORIES.map(([c]) => c)), highlight: null, ground: null, tileset: null, record: null };
  const qc = new Cesium.CustomDataSource('qc');
  viewer.dataSources.add(qc);

  async function getJSON(url) {
    const res = await fetch(url);
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(`${url}: ${res.status} ${detail}`);
    }
    return res.json();
  }

  // -- ground: a local height surface from the survey (ground elevations at the points), no terrain service --
  function groundAt(lon, lat) {
    const g = state.ground;
    if (!g) return 0;
    const clamp = (v) => Math.min(Math.max(v, 0), 1);
    const fx = clamp((lon - g.west) / (g.east - g.west)) * (g.width - 1);
    const fy = clamp((g.north - lat) / (g.north - g.south)) * (g.height - 1);
    const i = Math.min(Math.floor(fx), g.width - 2);
    const j = Math.min(Math.floor(fy), g.height - 2);
    const tx = fx - i;
    const ty = fy - j;
    const h = (r, c) => g.heights[r * g.width + c];
    return (h(j, i) * (1 - tx) + h(j, i + 1) * tx) * (1 - ty) + (h(j + 1, i) * (1 - tx) + h(j + 1, i + 1) * tx) * ty;
  }

  async function loadGround() {
    state.ground = await getJSON('/api/pipes/ground');
    stats.ground = { min: state.ground.min, max: state.ground.max };
    const size = 9; // posts per terrain tile: the surveyed ground is smooth
    const tiling = new Cesium.GeographicTilingScheme();
    viewer.terrainProvider = new Cesium.CustomHeightmapTerrainProvider({
      width: size, height: size, tilingScheme: tiling,
      callback: (x, y, level) => {
        const r = tiling.tileXYToRectangle(x, y, level);
        const out = new Float32Array(size * size);
        for (let j = 0; j < size; j++) {
          const lat = Cesium.Math.toDegrees(r.north - ((r.north - r.south) * j) / (size - 1));
          for (let i = 0; i < size; i++) {
            out[j * size + i] = groundAt(Cesium.Math.toDegrees(r.west + ((r.east - r.west) * i) / (size - 1)), lat);
          }
        }
        return out;
      },
    });
  }

  // -- categories and highlight: one Cesium3DTileStyle ----------------------------------------------------------
  const quote = (s) => `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

  function applyStyle() {
    if (!state.tileset) return;
    const shown = [...state.shown];
    const show = shown.length === CATEGORIES.length ? 'true'
      : shown.length === 0 ? 'false' : shown.map((c) => `\${category} === ${quote(c)}`).join(' || ');
    const style = { show };
    if (state.highlight) {
      style.color = { conditions: [[`\${id} === ${quote(state.highlight)}`, "color('yellow')"], ['true', "color('white')"]] };
    }
    state.tileset.style = new Cesium.Cesium3DTileStyle(style);
  }

  function setCategory(code, on) {
    if (on) state.shown.add(code); else state.shown.delete(code);
    const box = document.querySelector(`#categories input[value="${code}"]`);
    if (box) box.checked = on;
    applyStyle();
  }

  function buildCategoryBoxes() {
    for (const [code, zh, colour] of CATEGORIES) {
      const label = document.createElement('label');
      label.innerHTML = `<input type="checkbox" value="${code}" checked><span class="swatch" style="background:${colour}"></span>${code} ${zh}`;
      label.querySelector('input').addEventListener('change', (e) => setCategory(code, e.target.checked));
      $('categories').appendChild(label);
    }
  }

  // -- picking and the attribute panel ---------------------------------------------------------------------------
  function describe(picked) {
    if (picked instanceof Cesium.Cesium3DTileFeature) {
      const properties = {};
      for (const name of picked.getPropertyIds()) properties[name] = picked.getProperty(name);
      return { source: 'tiles', id: properties.id, properties };
    }
    if (picked && picked.id instanceof Cesium.Entity && picked.id.properties) {
      const properties = picked.id.properties.getValue(viewer.clock.currentTime);
      return { source: 'qc', id: properties.feature_id, properties };
    }
    return null;
  }

  function show(result) {
    if (!result) { $('info').hidden = true; return; }
    const rows = Object.entries(result.properties).map(([k, v]) => {
      let text = v === undefined || v === null || v === '' || (typeof v === 'number' && !Number.isFinite(v)) ? '—' : String(v);
      if (k === 'category' && CATEGORY_NAME[v]) text = `${v} ${CATEGORY_NAME[v]}`;
      if (k === 'kind' && KIND[v]) text = KIND[v];
      if (typeof v === 'number' && Number.isFinite(v) && !Number.isInteger(v)) text = v.toFixed(3);
      const th = document.createElement('th');
      const td = document.createElement('td');
      th.textContent = LABELS[k] || k;
      td.textContent = text;
      const tr = document.createElement('tr');
      tr.append(th, td);
      return tr;
    });
    $('info-title').textContent = result.source === 'qc' ? '质检问题 QC finding' : '属性 Attributes';
    $('attrs').replaceChildren(...rows);
    $('info').hidden = false;
    if (result.source === 'tiles' && result.properties.dataset && (result.properties.kind === 'segment' || result.properties.kind === 'point')) {
      storeRecord(result).catch((e) => console.warn('OGC API item unavailable:', e));
    }
  }

  // -- the full stored record of a picked pipe, from the OGC API (the same API other platforms use) -----------
  const RECORD_FIELDS = {
    owner: '权属单位', year: '建设年代', road: '所在道路', pressure: '压力', voltage: '电压', flow_dir: '流向',
    length_3d: '三维长度 (m)', slope: '坡度', survey_date: '探测日期', version_from: '数据版本',
  };

  async function storeRecord(result) {
    const collection = result.properties.kind === 'segment' ? 'pipe-segments' : 'pipe-points';
    const id = String(result.id).replace(/'/g, "''");
    const query = new URLSearchParams({ filter: `feature_id = '${id}' AND dataset_id = '${result.properties.dataset}'`, limit: '1' });
    const url = `/ogc/collections/${collection}/items?${query}`;
    const fc = await getJSON(url);
    const feature = fc.features && fc.features[0];
    state.record = feature || null;
    if (!feature || state.highlight !== result.id) return null; // another pick came first
    const extra = [];
    for (const [k, label] of Object.entries(RECORD_FIELDS)) {
      const v = feature.properties[k];
      if (v === undefined || v === null || v === '') continue;
      const th = document.createElement('th');
      const td = document.createElement('td');
      th.textContent = label;
      td.textContent = typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : String(v);
      const tr = document.createElement('tr');
      tr.append(th, td);
      extra.push(tr);
    }
    const link = document.createElement('a');
    link.href = `/ogc/collections/${collection}/items/${encodeURIComponent(feature.id)}?f=html`;
    link.target = '_blank';
    link.textContent = 'OGC API 要素 item';
    const th = document.createElement('th');
    th.textContent = '服务 API';
    const td = document.createElement('td');
    td.appendChild(link);
    const tr = document.createElement('tr');
    tr.className = 'ogc-record';
    tr.append(th, td);
    $('attrs').append(...extra, tr);
    return feature;
  }

  function pickAt(x, y) {
    const at = new Cesium.Cartesian2(x, y);
    const result = describe(scene.pick(at));
    if (result) {
      result.position = null;
      const world = scene.pickPositionSupported ? scene.pickPosition(at) : undefined;
      if (world) {
        const c = Cesium.Cartographic.fromCartesian(world);
        result.position = { lon: Cesium.Math.toDegrees(c.longitude), lat: Cesium.Math.toDegrees(c.latitude), height: c.height };
      }
    }
    state.highlight = result && result.source === 'tiles' ? result.id : null;
    applyStyle();
    show(result);
    if (window.cimViewer.onPick) window.cimViewer.onPick(result);
    return result;
  }

  new Cesium.ScreenSpaceEventHandler(scene.canvas).setInputAction(
    (e) => pickAt(e.position.x, e.position.y), Cesium.ScreenSpaceEventType.LEFT_CLICK);

  // -- camera ----------------------------------------------------------------------------------------------------
  /** The district seen from the south-south-west, above ground: the surveyed extent, else the tileset's. */
  function districtSphere() {
    const g = state.ground;
    if (!g) return state.tileset.boundingSphere;
    const rect = Cesium.Rectangle.fromDegrees(...g.extent);
    return Cesium.BoundingSphere.fromRectangle3D(rect, Cesium.Ellipsoid.WGS84, (g.min + g.max) / 2);
  }

  function overview(duration = 0) {
    const bs = districtSphere();
    return new Promise((resolve) => {
      viewer.camera.flyToBoundingSphere(bs, {
        offset: new Cesium.HeadingPitchRange(Cesium.Math.toRadians(20), Cesium.Math.toRadians(-40), bs.radius * 1.9),
        duration, complete: resolve, cancel: resolve,
      });
    });
  }

  /** Put the camera 9 m under the surveyed ground in the south-west of the district, looking up north-east at
   * the pipes through the translucent ground. */
  function goUnderground(duration = 1.5) {
    let lon;
    let lat;
    if (state.ground) {
      const [west, south, east, north] = state.ground.extent;
      lon = west + 0.19 * (east - west);
      lat = south + 0.21 * (north - south);
    } else {
      const c = Cesium.Cartographic.fromCartesian(state.tileset.boundingSphere.center);
      lon = Cesium.Math.toDegrees(c.longitude) - 0.002;
      lat = Cesium.Math.toDegrees(c.latitude) - 0.0015;
    }
    const ground = state.ground ? groundAt(lon, lat) : 0;
    const destination = Cesium.Cartesian3.fromDegrees(lon, lat, ground - 9);
    const orientation = { heading: Cesium.Math.toRadians(40), pitch: Cesium.Math.toRadians(11), roll: 0 };
    return new Promise((resolve) => {
      viewer.camera.flyTo({ destination, orientation, duration, complete: resolve, cancel: resolve });
    });
  }

  function flyToResult(r) {
    state.highlight = r.kind === 'segment' || r.kind === 'point' ? r.id : null;
    applyStyle();
    const height = r.height ?? groundAt(r.lon, r.lat);
    const target = new Cesium.BoundingSphere(Cesium.Cartesian3.fromDegrees(r.lon, r.lat, height), 4);
    return new Promise((resolve) => {
      viewer.camera.flyToBoundingSphere(target, {
        offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-40), 45), duration: 1.5, complete: resolve, cancel: resolve,
      });
    });
  }

  async function search(q) {
    const list = $('results');
    list.replaceChildren();
    const results = q.trim() ? await getJSON(`/api/pipes/search?q=${encodeURIComponent(q.trim())}`) : [];
    for (const r of results) {
      const li = document.createElement('li');
      li.textContent = `${r.id} · ${r.category || ''} ${CATEGORY_NAME[r.category] || ''} · ${r.kind === 'segment' ? '管线' : '管点'}`;
      li.addEventListener('click', () => flyToResult(r));
      list.appendChild(li);
    }
    if (!results.length) list.innerHTML = '<li class="none">未找到 no match</li>';
    else if (results[0].lon !== null) await flyToResult(results[0]);
    return results;
  }

  // -- QC findings -----------------------------------------------------------------------------------------------
  async function loadFindings() {
    const fc = await getJSON('/api/qc/findings');
    qc.entities.suspendEvents();
    for (const f of fc.features) {
      const [lon, lat, h] = f.geometry.coordinates;
      qc.entities.add({
        position: Cesium.Cartesian3.fromDegrees(lon, lat, (h ?? groundAt(lon, lat)) + 0.5),
        point: {
          pixelSize: 11, color: Cesium.Color.fromCssColorString(SEVERITY[f.properties.severity] || '#ffffff'),
          outlineColor: Cesium.Color.WHITE, outlineWidth: 1.5, disableDepthTestDistance: Number.POSITIVE_INFINITY,
        },
        properties: f.properties,
      });
    }
    qc.entities.resumeEvents();
    stats.qcFindings = fc.features.length;
    $('qc-count').textContent = String(fc.features.length);
  }

  /** The ground has loaded, or at least its tiles under the camera are fine enough to be within 0.3 m. */
  function groundSettled() {
    if (globe.tilesLoaded) return true;
    const c = viewer.camera.positionCartographic;
    const h = globe.getHeight(c);
    const expected = state.ground ? groundAt(Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude)) : 0;
    return h !== undefined && Math.abs(h - expected) < 0.3;
  }

  /** Resolves once the tileset (and, with ``withGround``, the ground) has loaded everything the view needs. */
  function whenTilesLoaded({ timeoutMs = 90000, withGround = false } = {}) {
    return new Promise((resolve, reject) => {
      let frames = 0;
      const start = performance.now();
      const remove = scene.postRender.addEventListener(() => {
        frames += 1;
        if (frames > 3 && state.tileset.tilesLoaded && (!withGround || groundSettled())) { remove(); resolve(frames); }
        else if (performance.now() - start > timeoutMs) { remove(); reject(new Error('tiles did not finish loading')); }
      });
    });
  }

  async function init() {
    buildCategoryBoxes();
    await loadGround().catch((e) => console.warn('ground surface unavailable, using the ellipsoid:', e));
    const tileset = await Cesium.Cesium3DTileset.fromUrl(TILESET_URL);
    tileset.tileLoad.addEventListener(() => { stats.tilesLoaded += 1; });
    tileset.allTilesLoaded.addEventListener(() => { stats.allTilesLoaded += 1; });
    tileset.tileVisible.addEventListener((tile) => { visible.add(tile); stats.tilesVisible = visible.size; });
    tileset.tileFailed.addEventListener((e) => status(`tile failed: ${e.url}`, true));
    tileset.colorBlendMode = Cesium.Cesium3DTileColorBlendMode.REPLACE; // highlight in plain yellow; white keeps colours
    scene.primitives.add(tileset);
    state.tileset = tileset;
    window.cimViewer.tileset = tileset;
    applyStyle();
    await loadFindings().catch((e) => status(`QC findings unavailable: ${e.message}`, true));
    await overview(0);
    status(`管线 tileset loaded · ${stats.qcFindings} QC findings`);
    return window.cimViewer;
  }

  $('search').addEventListener('submit', (e) => {
    e.preventDefault();
    search($('q').value).catch((err) => status(err.message, true));
  });
  $('underground').addEventListener('click', () => goUnderground());
  $('overview').addEventListener('click', () => overview(1.5));
  $('qc-toggle').addEventListener('change', (e) => { qc.show = e.target.checked; });

  window.cimViewer = {
    viewer, tileset: null, stats, qc, setCategory, search, goUnderground, overview, whenTilesLoaded, groundAt, districtSphere,
    pick: pickAt, ready: null, status, onPick: null, storeRecord, state,
  };
  window.cimPick = pickAt;
  window.cimViewer.ready = init().catch((e) => { status(`加载失败 failed: ${e.message}`, true); throw e; });
})();
