/* Pipe analyses in the viewer: burst isolation (with valves that fail to close), tracing, pollution sources,
 * excavation, cross-section, long profile, clearance, cover, gas-adjacent chambers, connectivity.
 * Each tool calls /api/analysis/..., draws the GeoJSON result by role (hit pipes, valves to close, traced run),
 * lists the summary and offers the GeoJSON as a download; sections and profiles show their printable chart.
 * For tests: window.cimViewer.analyse(tool, params) -> {summary, features, drawn, roles}. */
/* global Cesium */
(function () {
  'use strict';

  const cim = window.cimViewer;
  const viewer = cim.viewer;
  const scene = viewer.scene;
  const $ = (id) => document.getElementById(id);

  const ROLE_COLOURS = {
    failed: '#ff1744', isolated: '#ffea00', outage: '#ff9100', valve: '#d50000', valve_failed: '#aa00ff',
    chamber: '#18ffff', user: '#ffffff', area: '#ffea00', hit: '#ff1744', near: '#ffea00', excavation: '#ff9100',
    traced: '#76ff03', start: '#ffffff', source: '#2979ff', inlet: '#76ff03', dangling: '#ff4081',
    violation: '#ff1744', crossing: '#ff9100', parallel: '#ffea00', structure: '#ff9100', gas_main: '#ff00ff',
    section: '#ffffff', run: '#76ff03', cover: '#ff1744',
  };
  const ROLE_NAMES = {
    failed: '爆管', isolated: '关阀影响', outage: '次生停供', valve: '需关阀门', valve_failed: '失效阀门', chamber: '检查井',
    user: '用户', hit: '碰撞', near: '安全距离内', traced: '追踪', dangling: '悬挂端', gas_main: '燃气管',
  };
  const SUMMARY_LABELS = {
    valves_to_close: '需关阀门 valves to close', failed_valves: '失效阀门 failed valves',
    isolated_segments: '停水管段 isolated pipes', isolated_length_m: '停水长度 isolated (m)',
    outage_segments: '次生停供管段 outage pipes', outage_length_m: '次生停供长度 outage (m)', chambers: '井室 chambers',
    users: '用户 users', buildings: '建筑 buildings', hits: '碰撞 hits', near: '安全距离内 near', crossings: '穿越管线 crossings',
    segments: '管段 segments', length_m: '长度 length (m)', components: '连通子网 components', dangling_ends: '悬挂端 dangling ends',
    below_minimum: '覆土不足 below minimum', ends_checked: '检查端点 ends checked',
  };
  const TOOLS = {
    isolation: { needs: 'segment', help: '点击一段给水/燃气/热力管线，再点"分析"。Click a water, gas or heat pipe, then Run.' },
    'trace-down': { needs: 'feature', help: '点击管线或管点，追踪下游。Click a pipe or point: trace downstream.' },
    'trace-up': { needs: 'feature', help: '点击管线或管点，追踪上游。Click a pipe or point: trace upstream.' },
    pollution: { needs: 'feature', help: '点击排水管线或检查井，查找上游来源。Click a drain: upstream inlets.' },
    excavation: { needs: 'polygon', help: '在地面上点击绘制基坑（≥3 点），设深度，再点"分析"。Draw the pit on the ground.' },
    section: { needs: 'line', help: '在地面上点击两点绘制断面线。Click two points across the street.' },
    profile: { needs: 'points', help: '依次点击起点、终点检查井（排水）。Click the start and end manholes.' },
    clearance: { needs: null, help: '按 GB 50289-2016 检查管线间净距。Clearances between pipes.' },
    cover: { needs: null, help: '检查覆土深度。Cover depth against the minima.' },
    gas: { needs: null, help: '燃气管周边的其他管线井室（甲烷监测候选点）。Chambers near gas mains.' },
    connectivity: { needs: null, help: '连通子网与悬挂端。Sub-networks and dangling ends.' },
  };

  const layer = new Cesium.CustomDataSource('analysis');
  const sketch = new Cesium.CustomDataSource('sketch');
  viewer.dataSources.add(layer);
  viewer.dataSources.add(sketch);
  const state = { tool: 'isolation', picked: null, vertices: [], points: [], failed: new Set(), last: null, url: null };

  const colour = (role, alpha = 1) => Cesium.Color.fromCssColorString(ROLE_COLOURS[role] || '#e0e0e0').withAlpha(alpha);

  async function request(path, { body = null, params = {} } = {}) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) v.forEach((x) => query.append(k, x));
      else if (v !== null && v !== undefined) query.append(k, v);
    }
    const url = `/api/analysis/${path}?${query}`;
    const res = await fetch(url, body ? { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) } : {});
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(typeof detail === 'string' ? detail : JSON.stringify(detail));
    }
    return res;
  }

  // -- drawing results ---------------------------------------------------------------------------------------
  const toCartesian = (c) => Cesium.Cartesian3.fromDegrees(c[0], c[1], c.length > 2 && c[2] !== null ? c[2] : cim.groundAt(c[0], c[1]));

  function drawGeometry(geometry, role, properties) {
    const kind = geometry.type;
    const parts = kind.startsWith('Multi') ? geometry.coordinates : [geometry.coordinates];
    const base = kind.replace('Multi', '');
    let drawn = 0;
    for (const coords of parts) {
      if (base === 'Point') {
        layer.entities.add({
          position: toCartesian(coords), properties,
          point: { pixelSize: role === 'valve' || role === 'valve_failed' ? 13 : 9, color: colour(role),
            outlineColor: Cesium.Color.BLACK, outlineWidth: 1.5, disableDepthTestDistance: Number.POSITIVE_INFINITY },
        });
      } else if (base === 'LineString') {
        const material = new Cesium.PolylineGlowMaterialProperty({ color: colour(role), glowPower: 0.25 });
        layer.entities.add({
          properties,
          polyline: { positions: coords.map(toCartesian), width: 7, material, depthFailMaterial: material },
        });
      } else if (base === 'Polygon') {
        const ring = coords[0];
        const heights = ring.map((c) => (c.length > 2 && c[2] !== null ? c[2] : cim.groundAt(c[0], c[1])));
        layer.entities.add({
          properties,
          polyline: { positions: ring.map(toCartesian), width: 3, material: colour(role), depthFailMaterial: colour(role) },
          polygon: { hierarchy: ring.map(toCartesian), perPositionHeight: true, material: colour(role, 0.18),
            height: Math.min(...heights) },
        });
      } else {
        continue;
      }
      drawn += 1;
    }
    return drawn;
  }

  function drawCollection(fc) {
    layer.entities.removeAll();
    layer.entities.suspendEvents();
    let drawn = 0;
    const roles = {};
    for (const f of fc.features || []) {
      const role = (f.properties && f.properties.role) || 'result';
      roles[role] = (roles[role] || 0) + 1;
      if (f.geometry) drawn += drawGeometry(f.geometry, role, f.properties);
    }
    layer.entities.resumeEvents();
    return { drawn, roles };
  }

  function showSummary(result, roles) {
    const box = $('analysis-summary');
    box.replaceChildren();
    const summary = result.summary || {};
    const table = document.createElement('table');
    for (const [k, v] of Object.entries(summary)) {
      if (v !== null && typeof v === 'object') continue;
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      const td = document.createElement('td');
      th.textContent = SUMMARY_LABELS[k] || k;
      td.textContent = typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : String(v);
      tr.append(th, td);
      table.appendChild(tr);
    }
    const legend = document.createElement('p');
    legend.className = 'legend';
    legend.innerHTML = Object.entries(roles).map(([r, n]) => `<span class="swatch" style="background:${ROLE_COLOURS[r] || '#e0e0e0'}"></span>${ROLE_NAMES[r] || r} ${n}`).join(' ');
    box.append(table, legend);
    for (const w of result.warnings || []) {
      const p = document.createElement('p');
      p.className = 'warning';
      p.textContent = `⚠ ${w}`;
      box.appendChild(p);
    }
  }

  function showValves(result) {
    const list = $('valves');
    list.replaceChildren();
    if (state.tool !== 'isolation') return;
    for (const v of result.valves || []) {
      const li = document.createElement('li');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = state.failed.has(v.valve_id);
      box.title = '阀门失效（二次关阀）valve fails to close';
      box.addEventListener('change', () => {
        if (box.checked) state.failed.add(v.valve_id); else state.failed.delete(v.valve_id);
        run().catch((e) => cim.status(e.message, true));
      });
      const label = document.createElement('label');
      label.append(box, ` ${v.valve_id} ${v.state === 'failed' ? '(失效 failed)' : ''}`);
      li.appendChild(label);
      list.appendChild(li);
    }
  }

  async function showChart(path, body, params) {
    const img = $('chart');
    const res = await request(path, { body, params: { ...params, f: 'svg' } });
    const svg = await res.text();
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    const url = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
    img.dataset.url = url;
    img.src = url;
    img.hidden = false;
    await img.decode().catch(() => null);
    $('chart-link').href = url;
    $('chart-link').hidden = false;
  }

  function offerDownload(fc, name) {
    if (state.url) URL.revokeObjectURL(state.url);
    state.url = URL.createObjectURL(new Blob([JSON.stringify(fc)], { type: 'application/geo+json' }));
    const a = $('download');
    a.href = state.url;
    a.download = `${name}.geojson`;
    a.hidden = false;
  }

  // -- running a tool ----------------------------------------------------------------------------------------
  function lonlat(c) { return [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude)]; }

  /** The request (path, body, params) for the current tool and inputs. */
  function plan(tool, input) {
    const pickedId = input.id || (state.picked && state.picked.id);
    const need = (what) => { throw new Error(`${TOOLS[tool].help}（缺少 missing: ${what}）`); };
    switch (tool) {
      case 'isolation':
        if (!pickedId) need('segment');
        return { path: 'isolation', params: { segment: pickedId, failed_valve: input.failed || [...state.failed] } };
      case 'trace-down':
      case 'trace-up':
        if (!pickedId) need('feature');
        return { path: 'trace', params: { start: pickedId, direction: tool === 'trace-up' ? 'upstream' : 'downstream' } };
      case 'pollution':
        if (!pickedId) need('feature');
        return { path: 'pollution-sources', params: { at: pickedId } };
      case 'excavation': {
        const ring = input.polygon || state.vertices.map(lonlat);
        if (ring.length < 3) need('polygon');
        const closed = [...ring, ring[0]];
        return { path: 'excavation', body: { area: { type: 'Polygon', coordinates: [closed] }, depth_m: input.depth ?? Number($('depth').value) } };
      }
      case 'section': {
        const line = input.line || state.vertices.slice(0, 2).map(lonlat);
        if (line.length < 2) need('line');
        return { path: 'cross-section', body: { line: { type: 'LineString', coordinates: line } }, chart: true };
      }
      case 'profile': {
        const [start, end] = input.start ? [input.start, input.end] : state.points;
        if (!start || !end) need('start and end points');
        return { path: 'long-profile', params: { start, end }, chart: true };
      }
      case 'clearance': return { path: 'clearance', body: {} };
      case 'cover': return { path: 'cover', body: {} };
      case 'gas': return { path: 'gas-risk', params: {} };
      case 'connectivity': return { path: 'connectivity', params: {} };
      default: throw new Error(`unknown tool ${tool}`);
    }
  }

  async function analyse(tool = state.tool, input = {}) {
    const p = plan(tool, input);
    const t0 = performance.now();
    const [result, fc] = await Promise.all([
      request(p.path, { body: p.body, params: p.params }).then((r) => r.json()),
      request(p.path, { body: p.body, params: { ...p.params, f: 'geojson' } }).then((r) => r.json()),
    ]);
    const { drawn, roles } = drawCollection(fc);
    state.last = { tool, result, fc };
    showSummary(result, roles);
    showValves(result);
    offerDownload(fc, p.path);
    $('chart').hidden = true;
    $('chart-link').hidden = true;
    if (p.chart) await showChart(p.path, p.body, p.params);
    cim.status(`${tool}: ${fc.features.length} features in ${Math.round(performance.now() - t0)} ms`);
    return { summary: result.summary || {}, result, features: fc.features.length, drawn, roles };
  }

  function run() { return analyse(state.tool); }

  // -- inputs: picks and sketches ------------------------------------------------------------------------------
  function groundPosition(position) {
    const ray = viewer.camera.getPickRay(position);
    return ray ? scene.globe.pick(ray, scene) : undefined;
  }

  function redrawSketch() {
    sketch.entities.removeAll();
    const pts = state.vertices;
    for (const p of pts) {
      sketch.entities.add({ position: p, point: { pixelSize: 8, color: Cesium.Color.ORANGE, disableDepthTestDistance: Number.POSITIVE_INFINITY } });
    }
    if (pts.length > 1) {
      const ring = state.tool === 'excavation' && pts.length > 2 ? [...pts, pts[0]] : pts;
      sketch.entities.add({ polyline: { positions: ring, width: 2, material: Cesium.Color.ORANGE, depthFailMaterial: Cesium.Color.ORANGE } });
    }
  }

  function resetInputs() {
    state.vertices = [];
    state.points = [];
    state.failed.clear();
    redrawSketch();
  }

  new Cesium.ScreenSpaceEventHandler(scene.canvas).setInputAction((e) => {
    const need = TOOLS[state.tool].needs;
    if (need !== 'polygon' && need !== 'line') return;
    const world = groundPosition(e.position);
    if (!world) return;
    const c = Cesium.Cartographic.fromCartesian(world);
    if (need === 'line' && state.vertices.length >= 2) state.vertices = [];
    state.vertices.push(Cesium.Cartesian3.fromRadians(c.longitude, c.latitude, c.height + 0.2));
    redrawSketch();
  }, Cesium.ScreenSpaceEventType.LEFT_CLICK);

  cim.onPick = (picked) => {
    if (!picked || picked.source !== 'tiles') return;
    state.picked = picked;
    if (state.tool === 'profile') {
      if (state.points.length >= 2) state.points = [];
      state.points.push(picked.id);
      $('tool-help').textContent = `${TOOLS.profile.help} → ${state.points.join(' → ')}`;
    }
  };

  function selectTool(tool) {
    state.tool = tool;
    $('tool').value = tool;
    resetInputs();
    $('tool-help').textContent = TOOLS[tool].help;
    $('depth-row').hidden = tool !== 'excavation';
  }

  function clearAll() {
    layer.entities.removeAll();
    resetInputs();
    $('analysis-summary').replaceChildren();
    $('valves').replaceChildren();
    $('download').hidden = true;
    $('chart').hidden = true;
    $('chart-link').hidden = true;
  }

  const select = $('tool');
  for (const [tool, label] of [
    ['isolation', '爆管关阀 Burst isolation'], ['trace-down', '下游追踪 Trace downstream'], ['trace-up', '上游追踪 Trace upstream'],
    ['pollution', '污染溯源 Pollution sources'], ['excavation', '开挖分析 Excavation'], ['section', '横断面 Cross-section'],
    ['profile', '纵断面 Long profile'], ['clearance', '净距 Clearance'], ['cover', '覆土 Cover depth'],
    ['gas', '燃气邻近空间 Gas-adjacent chambers'], ['connectivity', '连通性 Connectivity'],
  ]) {
    const option = document.createElement('option');
    option.value = tool;
    option.textContent = label;
    select.appendChild(option);
  }
  select.addEventListener('change', () => selectTool(select.value));
  $('run').addEventListener('click', () => run().catch((e) => cim.status(e.message, true)));
  $('clear-analysis').addEventListener('click', clearAll);
  selectTool('isolation');

  Object.assign(cim, { analyse, selectTool, clearAnalysis: clearAll, analysisLayer: layer, analysisState: state });
})();
