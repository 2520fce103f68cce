// The FaceGate HTTP API: the API key (this tab only), fetch with auth, problem+json errors.

const STORAGE_KEY = "facegate.apiKey";

export const session = {
  get key() {
    return sessionStorage.getItem(STORAGE_KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(STORAGE_KEY, value);
    else sessionStorage.removeItem(STORAGE_KEY);
  },
};

/** An error answered by the API (or a network failure, status 0), with its problem+json body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title);
    this.status = status;
    this.problem = problem;
    this.code = problem.code || "";
    this.title = problem.title || "Error";
    this.detail = problem.detail || "";
  }
}

let authFailure = () => {};

/** Called with the ApiError of any 401/403 answer (the console goes back to sign-in). */
export function onAuthFailure(handler) {
  authFailure = handler;
}

const STATUS_TITLES = {
  400: "Bad request",
  404: "Not found",
  413: "Upload too large",
  500: "Internal server error",
  502: "Bad gateway",
  503: "Service unavailable",
  504: "Gateway timeout",
};

async function readProblem(resp) {
  const type = resp.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      const body = await resp.json();
      if (body && typeof body === "object" && !Array.isArray(body)) {
        const detail = typeof body.detail === "string" ? body.detail : "";
        return { ...body, title: body.title || STATUS_TITLES[resp.status] || `Error ${resp.status}`, detail };
      }
    } catch {
      // fall through: a body that is not JSON after all
    }
  }
  return {
    title: STATUS_TITLES[resp.status] || `Error ${resp.status}`,
    detail: `the server answered HTTP ${resp.status}${resp.statusText ? ` (${resp.statusText})` : ""}`,
    code: `http_${resp.status}`,
  };
}

/**
 * fetch() with the API key; resolves to the Response when it is 2xx, else throws ApiError.
 * `key` overrides the stored key (sign-in tries a key before keeping it).
 */
export async function request(path, { method = "GET", body, key, auth = true } = {}) {
  const headers = {};
  const apiKey = key ?? session.key;
  if (auth && apiKey) headers.Authorization = `Bearer ${apiKey}`;
  let payload = body;
  if (body && !(body instanceof FormData) && !(body instanceof Blob) && typeof body === "object") {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch {
    throw new ApiError(0, {
      title: "The service cannot be reached",
      detail: "the request did not reach FaceGate: check that the service is running and the network is up",
      code: "network_error",
    });
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, await readProblem(resp));
    if ((resp.status === 401 || resp.status === 403) && key === undefined) authFailure(err);
    throw err;
  }
  return resp;
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

/** POST a photo as multipart/form-data (field `image`) with the given form fields. */
export async function postPhoto(path, photo, fields) {
  const form = new FormData();
  form.append("image", photo.blob, photo.name || "photo.jpg");
  for (const [k, v] of Object.entries(fields)) {
    if (v === null || v === undefined || v === "") continue;
    form.append(k, typeof v === "boolean" ? String(v) : String(v));
  }
  return (await request(path, { method: "POST", body: form })).json();
}

/** POST several photos as multipart/form-data: `photos` maps a field name to a photo. */
export async function postPhotos(path, photos, fields = {}) {
  const form = new FormData();
  for (const [name, photo] of Object.entries(photos)) form.append(name, photo.blob, photo.name || `${name}.jpg`);
  for (const [k, v] of Object.entries(fields)) {
    if (v === null || v === undefined || v === "") continue;
    form.append(k, String(v));
  }
  return (await request(path, { method: "POST", body: form })).json();
}

/** A blob: URL of an authenticated image (revoke it when done). */
export async function blobURL(path) {
  const resp = await request(path);
  return URL.createObjectURL(await resp.blob());
}
