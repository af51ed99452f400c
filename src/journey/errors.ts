/**
 * Journey failures as registry errors (shared/errors.ts), so the HTTP layer turns them into
 * OperationOutcomes. Messages name the rule or the parameter, never patient data.
 */
import { CarewayError } from '../shared/errors.js';
import type { RuleViolation } from './rules.js';

export function ruleError(v: RuleViolation): CarewayError {
  return new CarewayError(
    v.rule === 'journey-closed' ? 'journey-closed' : 'rule-violation',
    `rule ${v.rule}: ${v.message}`,
    {
      detailsCode: v.rule,
    },
  );
}
