// What a grid cell shows and how ranges cross the clipboard; the cell tuples
// are those of ownkernel/ui/grid.py: [raw] (a literal) or [formula, value].

export function colName(c) {
  let s = "";
  for (c += 1; c > 0; c = Math.floor((c - 1) / 26)) s = String.fromCharCode(65 + ((c - 1) % 26)) + s;
  return s;
}

// What Python's parse_input would not read back as the same text (grid.py).
const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
function looksTyped(s) {
  const t = s.trim();
  return s === "" || NUMBER.test(t) || /^(true|false)$/i.test(t) || s.startsWith("'");
}

export function rawText(cell) {
  if (!cell) return "";
  const raw = cell[0];
  if (typeof raw === "boolean") return raw ? "TRUE" : "FALSE";
  if (typeof raw === "number") return String(raw);
  if (typeof raw === "string" && !raw.startsWith("=") && cell.length === 1 && looksTyped(raw)) return "'" + raw;
  return String(raw);
}

export function formatNumber(n) {
  if (Number.isInteger(n)) return String(n);
  return String(parseFloat(n.toPrecision(15))); // 0.1+0.2 shows 0.3, as spreadsheets do
}

// [text, css class] of what a cell shows.
export function display(cell) {
  if (!cell) return ["", ""];
  const v = cell.length === 2 ? cell[1] : cell[0];
  if (v === null || v === undefined) return ["", ""];
  if (typeof v === "number") return [formatNumber(v), "own-num"];
  if (typeof v === "boolean") return [v ? "TRUE" : "FALSE", "own-bool"];
  if (typeof v === "object" && v.e) return [v.e, "own-err"];
  return [String(v), ""];
}

// Tab-separated values as spreadsheet applications put them on the clipboard
// (a field with a tab, newline or quote is quoted, "" escapes a quote).
export function parseTSV(text) {
  const rows = [];
  let row = [], field = "", i = 0, quoted = false;
  text = text.replace(/\r\n?/g, "\n");
  if (text.endsWith("\n")) text = text.slice(0, -1);
  while (i < text.length) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i += 2; continue; }
      if (ch === '"') { quoted = false; i++; continue; }
      field += ch; i++; continue;
    }
    if (ch === '"' && field === "") { quoted = true; i++; continue; }
    if (ch === "\t") { row.push(field); field = ""; i++; continue; }
    if (ch === "\n") { row.push(field); rows.push(row); row = []; field = ""; i++; continue; }
    field += ch; i++;
  }
  row.push(field);
  rows.push(row);
  return rows;
}

export function toTSV(rows) {
  const q = (s) => (/[\t\n"]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s);
  return rows.map((r) => r.map(q).join("\t")).join("\n");
}
