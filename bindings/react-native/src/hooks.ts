// React hooks over the client (React is a peer dependency of this package). Kept apart from
// helpers.ts, which works without React (the Node tests use it).
import { useEffect, useState } from 'react';

import type { RobustClientInterface, ServiceStatus } from './generated/robust_api';
import { statusEventsOf } from './helpers';

/**
 * The client's `serviceStatus()`, re-read on every status event (breaker, health, network, …):
 * `const status = useServiceStatus(client);`. Every component using it shares one listener.
 */
export function useServiceStatus(
  client: Pick<RobustClientInterface, 'addStatusListener' | 'serviceStatus'>,
): ServiceStatus {
  const [status, setStatus] = useState<ServiceStatus>(() => client.serviceStatus());
  useEffect(() => {
    const sub = statusEventsOf(client).addListener(() => setStatus(client.serviceStatus()));
    setStatus(client.serviceStatus()); // what changed between the first render and now
    return () => sub.remove();
  }, [client]);
  return status;
}
