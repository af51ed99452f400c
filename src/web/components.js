/** Shared pieces: loading and error states, and a chart with its table view. */
import { useEffect, useRef } from 'preact/hooks';
import { html } from './html.js';

export function Problem({ error, what }) {
  if (!error) return null;
  if (error.status === 403)
    return html`<p class="notice" role="status" data-testid="forbidden">
      Your sign-in does not allow this (${error.message}).
    </p>`;
  // A server failure is said as one (the OperationOutcome's text alone could read like the user's mistake).
  if (error.status >= 500)
    return html`<p class="error" role="alert" data-testid="error">
      ${what}: the server failed (${error.status}): ${error.message}. Try again shortly.
    </p>`;
  return html`<p class="error" role="alert" data-testid="error">${what}: ${error.message}</p>`;
}

export const Loading = ({ what }) =>
  html`<p class="loading" role="status" aria-live="polite">Loading ${what}…</p>`;

/**
 * A Chart.js chart (the UMD build puts `Chart` on window). The canvas is labelled for assistive technology;
 * the same figures are in the table that goes with every chart.
 */
export function ChartView({ type, labels, datasets, label, testid, options = {} }) {
  const canvas = useRef(null);
  useEffect(() => {
    const Chart = window.Chart;
    if (!Chart || !canvas.current) return undefined;
    const palette = ['#1d4f91', '#b3541e', '#2f7d32', '#6a3d9a', '#8a6d00', '#0f6f73'];
    const chart = new Chart(canvas.current, {
      type,
      data: {
        labels,
        datasets: datasets.map((d, i) => ({
          backgroundColor: palette[i % palette.length],
          borderColor: palette[i % palette.length],
          ...d,
        })),
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, ...options },
    });
    return () => chart.destroy();
  }, [type, JSON.stringify(labels), JSON.stringify(datasets)]);
  return html`<div class="chart">
    <canvas ref=${canvas} role="img" aria-label=${label} data-testid=${testid}></canvas>
  </div>`;
}
