// Gate charts (drawn with SVG by hand): filled in by the next slice.
export function gateCharts(container, rollout, events) {}
