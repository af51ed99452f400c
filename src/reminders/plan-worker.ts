/**
 * Queue `reminder-plans`: "this Appointment changed, re-plan its reminders". Job data is the appointment id.
 * Every change gets its own job (no coalescing: a change made while a re-plan runs must not be dropped); a
 * re-plan reads the Appointment as it is then, so extra jobs cost a read and change nothing.
 */
import type { Queue, Worker } from 'bullmq';
import type { QueueRegistry } from '../queues/registry.js';
import { QUEUES } from '../queues/specs.js';
import type { ReminderService } from './service.js';

export const REMINDER_PLANS_QUEUE = QUEUES.reminderPlans;

export interface PlanJob {
  readonly appointmentId: string;
}

export interface PlanQueue {
  readonly queue: Queue<PlanJob>;
  readonly dead: Queue;
  readonly worker: Worker<PlanJob>;
  add(appointmentId: string): Promise<void>;
}

export function init(queues: QueueRegistry, service: () => ReminderService): PlanQueue {
  const { queue, dead, worker } = queues.openWithDeadLetters<PlanJob>(REMINDER_PLANS_QUEUE, async (job) => ({
    planned: (await service().replan(job.data.appointmentId)).length,
  }));
  return {
    queue,
    dead,
    worker,
    async add(appointmentId): Promise<void> {
      await queue.add('plan', { appointmentId });
    },
  };
}
