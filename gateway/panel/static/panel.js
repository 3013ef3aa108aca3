// The panel's pages: render each snapshot the server pushes on /events (SSE, reconnects by itself),
// and post the guard's actions with the PIN and the CSRF token (gateway/panel/app.py).
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
const csrf = () => (document.cookie.match(/(?:^|; )csrf=([^;]+)/) || [])[1] || "";
const hhmm = (wall) => new Date(wall * 1000).toLocaleTimeString("zh-CN", { hour12: false });
const ago = (wall) => { const m = Math.max(0, Math.floor((Date.now() / 1000 - wall) / 60)); return m < 1 ? "刚刚" : `${m}分钟前`; };
const TYPE_ZH = { smoke: "烟感", gas: "燃气", water_flow: "水流指示器", manhole: "井盖", hydrant: "消火栓", pump_station: "泵房", relay_box: "继电器箱" };
const troubleZh = (source) => TROUBLE_ZH[source] || (source.startsWith("bus") ? `总线故障 ${source.split(":")[1] || ""}` : source);
const TROUBLE_ZH = { uplink: "平台上行中断", sms: "短信猫故障", modem: "短信猫故障", store: "存储故障", gb26875: "消防中心链路中断", clock: "时钟未同步" };

async function post(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() }, body: JSON.stringify(body), credentials: "same-origin" });
  let data = {}; try { data = await r.json(); } catch (e) { data = { error: await r.text() }; }
  return { status: r.status, data };
}

function renderLink(s) {
  const link = $("link");
  link.textContent = s.link.up ? "" : "与网关主程序失去联系";
  link.className = s.link.up ? "link" : "link down";
}

function renderGuard(s) {
  const tr = $("trouble");
  tr.replaceChildren();
  if (s.trouble.length) {
    tr.append(el("strong", "", "故障："));
    const ul = el("ul");
    for (const t of s.trouble) ul.append(el("li", "", `${troubleZh(t.source)}：${t.reason}（${hhmm(t.since_wall_s)}起）`));
    tr.append(ul);
  }
  tr.hidden = !s.trouble.length;
  const box = $("alarms");
  box.replaceChildren();
  for (const a of s.alarms) {
    const card = el("article", `alarm ${a.state}`);
    card.dataset.alarmId = a.id;
    const head = el("div");
    head.append(el("span", "place", a.place));
    if (a.resident_zh && a.resident !== "common_area" && a.resident !== "ordinary") head.append(el("span", "resident", a.resident_zh));
    card.append(head, el("div", "what", `${a.what} · ${a.state_zh}`));
    card.append(el("div", "meta", `报警时间 ${hhmm(a.raised_wall)}（${ago(a.raised_wall)}） 设备 ${a.device_id}`));
    card.append(el("div", "meta notified", `已通知：${a.notified.length ? a.notified.join("、") : "—"}`));
    card.append(el("div", "meta acked", `确认人：${a.acknowledged_by || "尚无人确认"}`));
    if (a.state === "raised") {
      const ack = el("button", "ack", "确认报警"); ack.onclick = () => askPin(a, "ack");
      const sil = el("button", "silence", "消音"); sil.onclick = () => askPin(a, "silence");
      card.append(ack, sil);
    }
    box.append(card);
  }
  $("calm").hidden = s.alarms.length > 0;
}

let pending = null;
function askPin(alarm, action) {
  pending = { alarm, action };
  $("pin-title").textContent = `${action === "ack" ? "确认报警" : "消音"}：${alarm.place}`;
  $("pin").value = ""; $("pin-error").textContent = "";
  $("pin-dialog").showModal(); $("pin").focus();
}

async function submitPin(ev) {
  ev.preventDefault();
  if (!pending) return;
  const { alarm, action } = pending;
  const r = await post(`/api/alarms/${encodeURIComponent(alarm.id)}/${action}`, { pin: $("pin").value });
  if (r.status === 200) { pending = null; $("pin-dialog").close(); return; }
  $("pin-error").textContent = r.data.error === "locked" ? `尝试次数过多，请 ${Math.ceil(r.data.retry_after_s)} 秒后再试`
    : r.data.error === "wrong_pin" ? "密码错误" : `失败：${r.data.error || r.status}`;
}

function renderInstaller(s) {
  $("code-form").hidden = !!s.installer;
  $("walk").hidden = !s.installer;
  if (!s.installer || !s.walk) return;
  const w = s.walk;
  $("walk-summary").textContent = `${w.building ? w.building + "栋" : "全部楼栋"} · 已测 ${w.done} / 共 ${w.total} · 剩 ${w.left} 个` +
    (w.active ? ` · 剩余时间 ${Math.round(w.left_s / 60)} 分钟` : " · 已结束");
  const root = $("buildings");
  root.replaceChildren();
  for (const b of w.buildings) {
    const sec = el("div", "building");
    const all = b.flats.flatMap((f) => f.devices);
    sec.append(el("h2", "", `${b.building}栋 · ${all.filter((d) => d.ticked).length}/${all.length}`));
    const table = el("table");
    const hdr = el("tr"); for (const h of ["", "房间", "设备", "类型", "信号", "电量"]) hdr.append(el("th", "", h)); table.append(hdr);
    for (const f of b.flats) for (const d of f.devices) {
      const row = el("tr", d.ticked ? "done" : "left"); row.dataset.deviceId = d.id;
      const sig = d.signal || {};
      const sigText = [sig.rssi_dbm !== undefined ? `RSSI ${sig.rssi_dbm}` : "", sig.snr_db !== undefined ? `SNR ${sig.snr_db}` : ""].filter(Boolean).join(" ") || "—";
      for (const [cls, text] of [["tick", d.ticked ? "✔" : "○"], ["", f.flat], ["", d.id], ["", TYPE_ZH[d.type] || d.type], ["", sigText], ["", d.battery === null || d.battery === undefined ? "—" : `${d.battery}%`]]) row.append(el("td", cls, text));
      table.append(row);
    }
    sec.append(table); root.append(sec);
  }
}

async function submitCode(ev) {
  ev.preventDefault();
  const r = await post("/api/installer/login", { code: $("code").value.trim() });
  $("code-error").textContent = r.status === 200 ? "" : r.data.error === "locked" ? `尝试次数过多，请 ${Math.ceil(r.data.retry_after_s)} 秒后再试`
    : r.data.error === "no_walk" ? "当前没有进行中的巡检测试" : "验证码错误";
  if (r.status === 200) listen();  // the stream carries the checklist only to a session opened with the code
}

function render(s) {
  document.body.dataset.version = String((+document.body.dataset.version || 0) + 1);
  renderLink(s);
  if (document.body.dataset.view === "guard") renderGuard(s); else renderInstaller(s);
}

function start() {
  if (document.body.dataset.view === "guard") {
    $("pin-form").addEventListener("submit", submitPin);
    $("pin-cancel").onclick = () => { pending = null; $("pin-dialog").close(); };
    setInterval(() => { $("clock").textContent = hhmm(Date.now() / 1000); }, 1000);
  } else {
    $("code-form").addEventListener("submit", submitCode);
  }
  listen();
}

let es = null;
function listen() {
  if (es) es.close();
  es = new EventSource("/events");
  es.onmessage = (m) => render(JSON.parse(m.data));
  es.onerror = () => renderLink({ link: { up: false } });
}
document.addEventListener("DOMContentLoaded", start);
