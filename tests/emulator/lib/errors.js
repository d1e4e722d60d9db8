'use strict';
// Google error envelopes. Each API family shapes its errors a little differently, and the
// official clients key their retry decisions on these fields (gax reads `status` first,
// the REST clients read `errors[].reason`), so the shape matters as much as the code.

const STATUS_BY_CODE = {
  400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND',
  409: 'ALREADY_EXISTS', 412: 'FAILED_PRECONDITION', 413: 'INVALID_ARGUMENT',
  416: 'OUT_OF_RANGE', 429: 'RESOURCE_EXHAUSTED', 499: 'CANCELLED', 500: 'INTERNAL',
  501: 'UNIMPLEMENTED', 502: 'UNAVAILABLE', 503: 'UNAVAILABLE', 504: 'DEADLINE_EXCEEDED',
};

const REASON_BY_CODE = {
  400: 'invalid', 401: 'authError', 403: 'accessDenied', 404: 'notFound', 409: 'duplicate',
  412: 'conditionNotMet', 413: 'invalid', 429: 'rateLimitExceeded', 500: 'internalError',
  502: 'backendError', 503: 'backendError', 504: 'backendError',
};

class ApiError extends Error {
  // code: HTTP status; status: RPC status string; reason: errors[].reason for BQ/GCS.
  constructor(code, message, opts = {}) {
    super(message);
    this.code = code;
    this.status = opts.status || STATUS_BY_CODE[code] || (code >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION');
    this.reason = opts.reason || REASON_BY_CODE[code] || (code >= 500 ? 'backendError' : 'invalid');
    this.location = opts.location;
    this.locationType = opts.locationType;
    this.details = opts.details;
    this.headers = opts.headers;
  }
}

// api: 'pubsub' | 'bigquery' | 'gcs' | other. Returns the JSON-able body.
function envelope(api, err) {
  const e = { code: err.code, message: err.message };
  if (api !== 'pubsub') {
    const item = { message: err.message, domain: 'global', reason: err.reason };
    if (err.location) item.location = err.location;
    if (err.locationType) item.locationType = err.locationType;
    e.errors = [item];
  }
  // GCS JSON API usually leaves `status` out; Pub/Sub and BigQuery always send it.
  if (api !== 'gcs') e.status = err.status;
  if (err.details) e.details = err.details;
  return { error: e };
}

const bad = (msg, opts) => new ApiError(400, msg, opts);

// Project ids become folder names under --data: refuse anything that could leave it.
const PROJECT_RE = /^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/;
function checkProject(p) {
  if (typeof p !== 'string' || !PROJECT_RE.test(p)) throw bad(`Invalid project id: ${String(p).slice(0, 100)}`);
}
const notFound = (msg, opts) => new ApiError(404, msg, opts);

module.exports = { ApiError, envelope, bad, notFound, checkProject, PROJECT_RE, STATUS_BY_CODE, REASON_BY_CODE };
