/**
 * When a care-plan activity is overdue (pure): one reading for the timeline's pain point and the care-plan
 * sweep's Tasks (care-plan-tasks.ts).
 */
import type { CarePlan, CarePlanActivity } from 'fhir/r4.js';

const DONE: readonly string[] = ['completed', 'cancelled', 'stopped', 'entered-in-error'];

/** When an activity is due: the end of its scheduled period, else its start, else a dated schedule string. */
export function activityDueMs(act: CarePlanActivity): number | undefined {
  const d = act.detail;
  const raw = d?.scheduledPeriod?.end ?? d?.scheduledPeriod?.start ?? d?.scheduledString;
  if (!raw) return undefined;
  // A free-text schedule that is not a date parses to NaN and is never overdue.
  const ms = Date.parse(raw);
  return Number.isNaN(ms) ? undefined : ms;
}

export interface OverdueActivity {
  readonly planId: string;
  readonly index: number;
  readonly dueMs: number;
  /** The Task's business identifier value. */
  readonly key: string;
  readonly text: string;
}

/** The activities of an active plan that are past due and not done (pure). */
export function overdueActivities(plan: CarePlan, nowMs: number): OverdueActivity[] {
  if (plan.status !== 'active' || !plan.id) return [];
  return (plan.activity ?? []).flatMap((act, index): OverdueActivity[] => {
    const d = act.detail;
    if (!d || DONE.includes(d.status)) return [];
    const dueMs = activityDueMs(act);
    if (dueMs === undefined || !(dueMs < nowMs)) return [];
    return [
      {
        planId: plan.id!,
        index,
        dueMs,
        key: `${plan.id}/${index}/${new Date(dueMs).toISOString()}`,
        text: d.code?.text ?? d.code?.coding?.[0]?.display ?? 'follow-up',
      },
    ];
  });
}
