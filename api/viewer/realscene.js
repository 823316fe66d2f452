/* Real-scene 3D (实景三维) layers in the viewer, from GET /api/realscene/layers: the orthophoto (DOM) as the
 * globe's base imagery (XYZ tiles from this service — no internet), the DEM as Cesium terrain (quantized-mesh
 * from this service, replacing the surface interpolated from the surveyed manhole covers), point clouds, meshes
 * and registered tilesets as 3D Tiles. One switch and a fly-to button per layer.
 * Load after viewer.js. For tests: window.cimViewer.realscene = {ready, layers, tilesets, imagery, terrain,
 *   setShown(id, on), flyTo(id), whenLoaded({timeoutMs}) -> {tilesets, imageryTiles, terrain}, pointStyle(mode, ground)}. */
/* global Cesium */
(function () {
  'use strict';

  const cim = window.cimViewer;
  const viewer = cim.viewer;
  const scene = viewer.scene;
  const globe = scene.globe;
  const $ = (id) => document.getElementById(id);

  const KIND_NAMES = {
    dom: '正射影像 DOM', dem: '数字高程 DEM', pointcloud: '点云 point cloud', mesh: '倾斜摄影 mesh', tileset: '三维瓦片 3D Tiles',
  };
  // ASPRS LAS classes: ground, vegetation, building, water, ...
  const CLASS_COLOURS = [
    ['2', '#b08d57'], ['3', '#7cb342'], ['4', '#43a047'], ['5', '#2e7d32'], ['6', '#e57373'], ['9', '#4fc3f7'],
    ['17', '#9e9e9e'],
  ];

  const state = {
    layers: [], tilesets: new Map(), imagery: new Map(), terrain: null, surveyTerrain: null, demTerrain: null, shown: new Set(),
    imageryTiles: 0, pointMode: 'rgb', groundPoints: false,
  };

  async function getJSON(url) {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${url}: ${res.status}`);
    return res.json();
  }

  function rectangleOf(layer) {
    return layer.bbox ? Cesium.Rectangle.fromDegrees(...layer.bbox) : undefined;
  }

  /** Points coloured by their own RGB or by class; ground points (class 2) hidden unless asked for — the DEM
   * terrain and the orthophoto already show the ground, and the pipes under it stay visible. */
  function pointStyle(mode = state.pointMode, ground = state.groundPoints) {
    state.pointMode = mode;
    state.groundPoints = ground;
    const style = { pointSize: 2.5, show: ground ? 'true' : '${classification} !== 2' };
    if (mode === 'class') {
      style.color = { conditions: [...CLASS_COLOURS.map(([c, hex]) => [`\${classification} === ${c}`, `color('${hex}')`]), ['true', "color('#cccccc')"]] };
    }
    for (const [id, ts] of state.tilesets) {
      const layer = state.layers.find((l) => l.id === id);
      if (layer && layer.kind === 'pointcloud') ts.style = new Cesium.Cesium3DTileStyle(style);
    }
  }

  async function addImagery(layer) {
    const provider = new Cesium.UrlTemplateImageryProvider({
      url: layer.links.xyz, tilingScheme: new Cesium.WebMercatorTilingScheme(), rectangle: rectangleOf(layer),
      maximumLevel: 21, credit: layer.title || layer.id,
    });
    provider.errorEvent.addEventListener((e) => { e.retry = false; }); // outside the image: no endless retries
    const request = provider.requestImage.bind(provider);
    provider.requestImage = (...args) => {
      const image = request(...args);
      if (image) Promise.resolve(image).then(() => { state.imageryTiles += 1; }, () => null);
      return image;
    };
    const imageryLayer = viewer.imageryLayers.addImageryProvider(provider, 0);
    state.imagery.set(layer.id, imageryLayer);
    // with real imagery the ground is mostly opaque from above; under ground it still shows the pipes
    globe.translucency.frontFaceAlphaByDistance = new Cesium.NearFarScalar(50.0, 0.45, 1500.0, 0.9);
  }

  async function addTerrain(layer) {
    const provider = await Cesium.CesiumTerrainProvider.fromUrl(layer.links.terrain);
    state.surveyTerrain = viewer.terrainProvider;
    state.demTerrain = provider;
    viewer.terrainProvider = provider;
    state.terrain = layer.id;
  }

  async function addTileset(layer) {
    const tileset = await Cesium.Cesium3DTileset.fromUrl(layer.links.tileset, { maximumScreenSpaceError: 8 });
    tileset.tileFailed.addEventListener((e) => cim.status(`${layer.id}: tile failed ${e.url}`, true));
    scene.primitives.add(tileset);
    state.tilesets.set(layer.id, tileset);
    if (layer.kind === 'pointcloud') {
      tileset.pointCloudShading.attenuation = true;
      tileset.pointCloudShading.maximumAttenuation = 4;
      pointStyle();
    }
  }

  async function add(layer) {
    if (layer.links.xyz) await addImagery(layer);
    else if (layer.links.terrain) await addTerrain(layer);
    else if (layer.links.tileset) await addTileset(layer);
    else return false;
    state.shown.add(layer.id);
    return true;
  }

  function setShown(id, on) {
    const layer = state.layers.find((l) => l.id === id);
    if (!layer) return;
    if (state.tilesets.has(id)) state.tilesets.get(id).show = on;
    if (state.imagery.has(id)) state.imagery.get(id).show = on;
    if (state.terrain === id) viewer.terrainProvider = on ? state.demTerrain : state.surveyTerrain;
    if (on) state.shown.add(id); else state.shown.delete(id);
    const box = document.querySelector(`#realscene-layers input[value="${CSS.escape(id)}"]`);
    if (box) box.checked = on;
  }

  function flyTo(id) {
    const layer = state.layers.find((l) => l.id === id);
    if (!layer) return Promise.resolve();
    const ts = state.tilesets.get(id);
    return new Promise((resolve) => {
      const done = { complete: resolve, cancel: resolve, duration: 1.5 };
      if (ts) viewer.camera.flyToBoundingSphere(ts.boundingSphere, { ...done, offset: new Cesium.HeadingPitchRange(0.3, -0.6, ts.boundingSphere.radius * 2.2) });
      else if (layer.bbox) viewer.camera.flyTo({ ...done, destination: Cesium.Rectangle.fromDegrees(...layer.bbox) });
      else resolve();
    });
  }

  function listItem(layer, ok) {
    const li = document.createElement('li');
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.value = layer.id;
    box.checked = ok;
    box.disabled = !ok;
    box.addEventListener('change', (e) => setShown(layer.id, e.target.checked));
    label.append(box, ` ${KIND_NAMES[layer.role] || KIND_NAMES[layer.kind] || layer.kind} · ${layer.title || layer.id}`);
    const fly = document.createElement('button');
    fly.type = 'button';
    fly.textContent = '飞至';
    fly.title = 'fly to';
    fly.addEventListener('click', () => flyTo(layer.id));
    li.append(label, fly);
    return li;
  }

  /** Resolves when every shown tileset, the imagery and the terrain under the camera have loaded. */
  function whenLoaded({ timeoutMs = 90000 } = {}) {
    return new Promise((resolve, reject) => {
      let frames = 0;
      const start = performance.now();
      const remove = scene.postRender.addEventListener(() => {
        frames += 1;
        const tilesets = [...state.tilesets.values()].filter((t) => t.show);
        if (frames > 5 && tilesets.every((t) => t.tilesLoaded) && globe.tilesLoaded) {
          remove();
          resolve({ frames, tilesets: tilesets.length, imageryTiles: state.imageryTiles, terrain: state.terrain });
        } else if (performance.now() - start > timeoutMs) {
          remove();
          reject(new Error('real-scene layers did not finish loading'));
        }
      });
    });
  }

  async function init() {
    await cim.ready.catch(() => null);
    const body = await getJSON('/api/realscene/layers');
    state.layers = body.layers;
    const list = $('realscene-layers');
    // imagery and terrain first (the scene's ground), then the 3D layers
    const order = { dom: 0, dem: 1 };
    const layers = [...state.layers].sort((a, b) => (order[a.role] ?? 2) - (order[b.role] ?? 2));
    for (const layer of layers) {
      let ok = false;
      try { ok = await add(layer); } catch (e) { cim.status(`${layer.id}: ${e.message}`, true); }
      if (list) list.appendChild(listItem(layer, ok));
    }
    $('realscene').hidden = state.layers.length === 0;
    return api;
  }

  const api = {
    ready: null, get layers() { return state.layers; }, tilesets: state.tilesets, imagery: state.imagery,
    get terrain() { return state.terrain; }, setShown, flyTo, whenLoaded, pointStyle,
  };
  cim.realscene = api;
  const modeBox = $('point-mode');
  if (modeBox) modeBox.addEventListener('change', (e) => pointStyle(e.target.checked ? 'class' : 'rgb'));
  const groundBox = $('ground-points');
  if (groundBox) groundBox.addEventListener('change', (e) => pointStyle(undefined, e.target.checked));
  api.ready = init().catch((e) => { cim.status(`实景三维 unavailable: ${e.message}`, true); throw e; });
})();
