/**
 * The referrals area: referral intake and triage (ReferralService), and the `referral-status` queue that tells
 * referrers about triage changes. Built from the area context; the journeys it opens come from the journey
 * service it is given.
 */
import type { AreaContext } from '../area-context.js';
import { createReferrerHttp } from '../config/fhir-client.js';
import type { JourneyService } from '../journey/service.js';
import { ReferralService } from './service.js';
import { init as initStatusQueue, type StatusQueue } from './status-worker.js';

export interface ReferralsModule {
  readonly service: ReferralService;
  readonly status: StatusQueue;
}

export function referralsModule(ctx: AreaContext, journeys: JourneyService): ReferralsModule {
  const cfg = ctx.config.referrals;
  // The FHIR server's credentials and TLS go with status updates to the REFERRAL_ENDPOINTS referrers only.
  const status = initStatusQueue(ctx.queues, {
    fhir: ctx.fhir,
    referrer: createReferrerHttp(ctx.config, ctx.fhir),
  });
  const service = new ReferralService({
    fhir: ctx.fhir,
    lock: ctx.lock,
    journeys,
    replyAllowlist: cfg.replyAllowlist,
    endpoints: cfg.endpoints,
    ...(cfg.receivingOrganization ? { receivingOrganization: cfg.receivingOrganization } : {}),
    onStatusChange: (taskId, version) => status.add({ taskId, version }),
  });
  return { service, status };
}
