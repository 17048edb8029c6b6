// livevote-load --scenario baseline: 200 votes/s for 30 s.
import { vote, requireInputs, thresholds } from './lib.js';

export const options = {
  thresholds,
  scenarios: {
    votes: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 200),
      timeUnit: '1s',
      duration: `${__ENV.DURATION_SECS || 30}s`,
      preAllocatedVUs: 200,
      maxVUs: 2000,
    },
  },
};

export function setup() {
  requireInputs();
}

export default function () {
  vote();
}
