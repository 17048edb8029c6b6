// livevote-load --scenario spike: from 0 to the peak rate in 5 s, then held.
import { vote, requireInputs, thresholds } from './lib.js';

const rate = Number(__ENV.RATE || 2500);
const duration = Number(__ENV.DURATION_SECS || 30);
const ramp = Number(__ENV.RAMP_SECS || 5);

export const options = {
  thresholds,
  scenarios: {
    votes: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      stages: [
        { target: rate, duration: `${ramp}s` },
        { target: rate, duration: `${duration - ramp}s` },
      ],
      preAllocatedVUs: 1000,
      maxVUs: 10000,
    },
  },
};

export function setup() {
  requireInputs();
}

export default function () {
  vote();
}
