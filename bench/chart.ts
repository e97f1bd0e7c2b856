/**
 * The benchmark's results as a chart for docs/benchmarks.md: a hand-written SVG, no scripts and
 * no external resources, so that GitHub's markdown viewer shows it as an image. One horizontal
 * bar per target of the measured process's CPU per request, mcpgw in colour and the floor,
 * pass-throughs and peers in grey, with each target's requests per second beside it.
 */
import type { BenchReport } from "./report.js";

const WIDTH = 900;
const MARGIN = 16;
/** The target names end here, right-aligned; the bars start a little to the right of it. */
const MIN_LABEL_END = 120;
const MAX_LABEL_END = 320;
/** A rough width of one character of the 12 px labels, to fit the longest name. */
const LABEL_CHAR_WIDTH = 7;
/** Room right of the longest bar for its printed value. */
const VALUE_ROOM = 70;
/** The requests-per-second column, right-aligned at WIDTH - MARGIN. */
const RATE_COLUMN = 90;
const FIRST_ROW = 84;
const ROW_HEIGHT = 24;
const BAR_HEIGHT = 16;
const LEGEND_HEIGHT = 36;

const MCPGW_COLOUR = "#2f6fd0";
const OTHER_COLOUR = "#9aa0a6";
const TEXT_COLOUR = "#1f2328";
const MUTED_COLOUR = "#59636e";

/** Text for the SVG's character data and attribute values. */
export function escapeXml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;");
}

/** Coordinates to two decimals, without trailing zeros, so the output stays short and stable. */
function coordinate(value: number): string {
  return Number(value.toFixed(2)).toString();
}

function micros(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(1)} µs` : "n/a";
}

function perSecond(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toString() : "n/a";
}

function text(
  x: number,
  y: number,
  content: string,
  attributes: Record<string, string> = {},
): string {
  const extra = Object.entries(attributes)
    .map(([name, value]) => ` ${name}="${escapeXml(value)}"`)
    .join("");
  return `<text x="${coordinate(x)}" y="${coordinate(y)}"${extra}>${escapeXml(content)}</text>`;
}

/** The same report gives the same string: nothing here reads the clock or the machine. */
export function renderChartSvg(report: BenchReport): string {
  const { results, machine } = report;
  const longestName = Math.max(0, ...results.map(({ target }) => target.name.length));
  const labelEnd = Math.min(
    MAX_LABEL_END,
    Math.max(MIN_LABEL_END, MARGIN + longestName * LABEL_CHAR_WIDTH),
  );
  const barStart = labelEnd + 8;
  const rateEnd = WIDTH - MARGIN;
  const fullBar = rateEnd - RATE_COLUMN - VALUE_ROOM - barStart;
  const largest = Math.max(
    0,
    ...results.map(({ cpuMicrosPerRequest }) =>
      Number.isFinite(cpuMicrosPerRequest) ? cpuMicrosPerRequest : 0,
    ),
  );
  const height = FIRST_ROW + results.length * ROW_HEIGHT + LEGEND_HEIGHT;
  const day = report.date.toISOString().slice(0, 10);
  const title = `mcpgw benchmark of ${day}: CPU per request and throughput`;
  const subtitle = `Node ${machine.node}, ${machine.cpuModel} × ${machine.cores} cores, ${machine.os}`;

  const rows = results.flatMap(({ target, cpuMicrosPerRequest, load }, index) => {
    const top = FIRST_ROW + index * ROW_HEIGHT;
    const baseline = top + BAR_HEIGHT / 2 + 4;
    const width =
      largest > 0 && Number.isFinite(cpuMicrosPerRequest) && cpuMicrosPerRequest > 0
        ? (cpuMicrosPerRequest / largest) * fullBar
        : 0;
    const fill = target.name.startsWith("mcpgw") ? MCPGW_COLOUR : OTHER_COLOUR;
    return [
      text(labelEnd, baseline, target.name, { "text-anchor": "end" }),
      `<rect class="bar" x="${coordinate(barStart)}" y="${coordinate(top)}" width="${coordinate(width)}" height="${BAR_HEIGHT}" fill="${fill}"/>`,
      text(barStart + width + 6, baseline, micros(cpuMicrosPerRequest)),
      text(rateEnd, baseline, perSecond(load.requestsPerSecond), { "text-anchor": "end" }),
    ];
  });

  const legendTop = FIRST_ROW + results.length * ROW_HEIGHT + 14;
  const legendBaseline = legendTop + 10;
  const axisBottom = FIRST_ROW + results.length * ROW_HEIGHT - (ROW_HEIGHT - BAR_HEIGHT);
  const lines = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${escapeXml(title)}" font-family="sans-serif" font-size="12" fill="${TEXT_COLOUR}">`,
    `<title>${escapeXml(title)}</title>`,
    // Opaque, so that the chart stays readable on a dark page.
    `<rect x="0" y="0" width="${WIDTH}" height="${height}" rx="6" fill="#ffffff"/>`,
    text(MARGIN, 26, title, { "font-size": "15", "font-weight": "bold" }),
    text(MARGIN, 46, subtitle, { fill: MUTED_COLOUR }),
    text(barStart, 72, "CPU µs per request of the measured process (shorter is better)", {
      "font-weight": "bold",
    }),
    text(rateEnd, 72, "req/s", { "text-anchor": "end", "font-weight": "bold" }),
    `<line x1="${coordinate(barStart)}" y1="${FIRST_ROW - 4}" x2="${coordinate(barStart)}" y2="${coordinate(axisBottom + 4)}" stroke="${MUTED_COLOUR}" stroke-width="1"/>`,
    ...rows,
    `<rect x="${coordinate(barStart)}" y="${legendTop}" width="12" height="12" fill="${MCPGW_COLOUR}"/>`,
    text(barStart + 18, legendBaseline, "mcpgw"),
    `<rect x="${coordinate(barStart + 80)}" y="${legendTop}" width="12" height="12" fill="${OTHER_COLOUR}"/>`,
    text(barStart + 98, legendBaseline, "direct, pass-throughs and peers"),
    "</svg>",
  ];
  return `${lines.join("\n")}\n`;
}
