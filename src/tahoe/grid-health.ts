// How the grid looks from the gateway, for `blackmatch status`: the gateway's welcome page as JSON (`GET /?t=json`),
// which lists the storage servers it knows and whether it is connected to each. One bounded request; no state.

export interface GridHealth {
  /** The gateway answered. */
  reachable: boolean;
  /** Storage servers the gateway is connected to, of those it knows. */
  connected?: number;
  known?: number;
  /** Why the gateway could not tell (unreachable, or an answer of an unknown shape). */
  error?: string;
}

export async function gridHealth(nodeUrl: string, timeoutMs: number): Promise<GridHealth> {
  const base = nodeUrl.endsWith('/') ? nodeUrl : nodeUrl + '/';
  let body: unknown;
  try {
    const res = await fetch(`${base}?t=json`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return { reachable: true, error: `the gateway answered ${res.status}` };
    body = await res.json();
  } catch (e) {
    const reason = (e as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : ((e as Error & { cause?: Error }).cause?.message ?? (e as Error).message);
    return { reachable: false, error: reason };
  }
  // Shape (Tahoe 1.17 and later): {"servers": [{"nickname", "connection_status": "connected to ..." | ...}], ...}
  const servers = typeof body === 'object' && body !== null ? (body as { servers?: unknown }).servers : undefined;
  if (!Array.isArray(servers)) return { reachable: true, error: 'the gateway did not list its storage servers' };
  const connected = servers.filter((s) => typeof s?.connection_status === 'string' && /^connected/i.test(s.connection_status)).length;
  return { reachable: true, connected, known: servers.length };
}
