// A form generated from a JSON Schema object (a tool's inputSchema, an elicitation's
// requestedSchema): one labelled field per property. Strings, numbers, booleans and
// enums get inputs; objects, arrays and anything else a raw JSON editor.

import { html } from "./vendor/preact-htm.mjs";

/** The choices of an enum-like schema: [{value, label}] or null. */
export function choices(s) {
  if (!s || typeof s !== "object") return null;
  if (Array.isArray(s.enum)) {
    return s.enum.map((v, i) => ({ value: v, label: (s.enumNames && s.enumNames[i]) || String(v) }));
  }
  const alts = s.oneOf || s.anyOf;
  if (Array.isArray(alts) && alts.length && alts.every((a) => a && "const" in a)) {
    return alts.map((a) => ({ value: a.const, label: a.title || String(a.const) }));
  }
  return null;
}

function typeOf(s) {
  if (!s || typeof s !== "object") return "json";
  let t = s.type;
  if (Array.isArray(t)) t = t.find((x) => x !== "null") || t[0];
  if (choices(s)) return "enum";
  if (t === "array" && choices(s.items)) return "multi";
  if (t === "string" || t === "number" || t === "integer" || t === "boolean") return t;
  return "json";
}

/** Initial form values (strings, booleans, arrays) from the schema's defaults. */
export function initialValues(schema) {
  const out = {};
  for (const [name, s] of Object.entries((schema && schema.properties) || {})) {
    const kind = typeOf(s);
    const d = s && s.default;
    if (kind === "boolean") out[name] = d === true;
    else if (kind === "multi") out[name] = Array.isArray(d) ? d.map(String) : [];
    else if (kind === "json") out[name] = d === undefined ? "" : JSON.stringify(d, null, 2);
    else out[name] = d === undefined ? "" : String(d);
  }
  return out;
}

/** The form's values as arguments: typed, empty optional fields left out. Throws on bad JSON. */
export function collect(schema, values) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const out = {};
  for (const [name, s] of Object.entries(props)) {
    const kind = typeOf(s);
    const v = values[name];
    if (kind === "boolean") {
      out[name] = !!v;
      continue;
    }
    if (kind === "multi") {
      const opts = choices(s.items);
      if (v && v.length) out[name] = v.map((x) => opts.find((o) => String(o.value) === x)?.value ?? x);
      else if (required.has(name)) out[name] = [];
      continue;
    }
    if (v === "" || v === undefined) {
      if (required.has(name) && kind === "string") out[name] = "";
      continue;
    }
    if (kind === "number" || kind === "integer") {
      const n = Number(v);
      if (Number.isNaN(n)) throw new Error(`${name}: not a number`);
      out[name] = n;
    } else if (kind === "enum") {
      const opt = choices(s).find((o) => String(o.value) === v);
      out[name] = opt ? opt.value : v;
    } else if (kind === "json") {
      try {
        out[name] = JSON.parse(v);
      } catch (e) {
        throw new Error(`${name}: invalid JSON (${e.message})`);
      }
    } else {
      out[name] = v;
    }
  }
  return out;
}

function Field({ id, name, s, required, value, set }) {
  const kind = typeOf(s);
  const desc = s && s.description;
  const hint = [kind === "json" ? (s && s.type ? `${s.type}, JSON` : "JSON") : kind === "multi" ? "choose one or more" : kind,
    s && s.format].filter(Boolean).join(", ");
  const label = html`<div class="label-row"><label for=${id}>${name}</label>${required
    ? html`<span class="req" title="required">required</span>` : ""}<span class="hint">${hint}</span></div>`;
  let input;
  if (kind === "boolean") {
    return html`<div class="field field-bool">
      <input id=${id} type="checkbox" checked=${!!value} onChange=${(e) => set(e.currentTarget.checked)} />
      ${label}${desc ? html`<p class="desc">${desc}</p>` : ""}</div>`;
  } else if (kind === "enum") {
    input = html`<select id=${id} value=${value} onChange=${(e) => set(e.currentTarget.value)}>
      ${required ? "" : html`<option value="">—</option>`}
      ${choices(s).map((o) => html`<option value=${String(o.value)}>${o.label}</option>`)}</select>`;
  } else if (kind === "multi") {
    input = html`<select id=${id} multiple size=${Math.min(5, choices(s.items).length)}
      onChange=${(e) => set([...e.currentTarget.selectedOptions].map((o) => o.value))}>
      ${choices(s.items).map((o) => html`<option value=${String(o.value)} selected=${(value || []).includes(String(o.value))}>${o.label}</option>`)}</select>`;
  } else if (kind === "number" || kind === "integer") {
    input = html`<input id=${id} type="number" step=${kind === "integer" ? "1" : "any"} min=${s.minimum} max=${s.maximum}
      value=${value} onInput=${(e) => set(e.currentTarget.value)} />`;
  } else if (kind === "string") {
    const type = s.format === "date" ? "date" : s.format === "email" ? "email" : s.format === "uri" ? "url" : "text";
    input = (s.maxLength || 0) > 200
      ? html`<textarea id=${id} rows="3" value=${value} onInput=${(e) => set(e.currentTarget.value)}></textarea>`
      : html`<input id=${id} type=${type} value=${value} onInput=${(e) => set(e.currentTarget.value)} />`;
  } else {
    input = html`<textarea id=${id} class="json" rows="4" spellcheck="false" placeholder=${s && s.type === "array" ? "[]" : "{}"}
      value=${value} onInput=${(e) => set(e.currentTarget.value)}></textarea>`;
  }
  return html`<div class="field">${label}${input}${desc ? html`<p class="desc">${desc}</p>` : ""}</div>`;
}

/** The fields of ``schema``; ``values`` and ``onChange(name, value)`` hold the state. */
export function SchemaForm({ schema, values, onChange, idPrefix }) {
  const props = Object.entries((schema && schema.properties) || {});
  const required = new Set((schema && schema.required) || []);
  if (!props.length) return html`<p class="muted">No arguments.</p>`;
  return html`<div class="schema-form">${props.map(([name, s]) => html`<${Field} key=${name} id=${`${idPrefix}-${name}`}
    name=${name} s=${s} required=${required.has(name)} value=${values[name]} set=${(v) => onChange(name, v)} />`)}</div>`;
}
