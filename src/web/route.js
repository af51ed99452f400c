/**
 * Hash routing: `#/<view>/<id>?<filters>`. Filters live in the URL, so a view can be bookmarked or shared, and
 * the back button walks through filter changes.
 */
import { useEffect, useState } from 'preact/hooks';

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, '') || '/board';
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean);
  return {
    view: parts[0] ?? 'board',
    id: parts[1] ? decodeURIComponent(parts[1]) : undefined,
    query: new URLSearchParams(query),
  };
}

export function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** Replaces the current view's filters in the URL (empty values dropped). */
export function setQuery(view, values, { push = false } = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values))
    if (v !== undefined && v !== '' && v !== false) q.set(k, String(v));
  const s = q.toString();
  const hash = `#/${view}${s ? `?${s}` : ''}`;
  if (push) location.hash = hash;
  else {
    history.replaceState(null, '', hash);
    dispatchEvent(new HashChangeEvent('hashchange'));
  }
}

export const queryObject = (q) => Object.fromEntries(q.entries());
