// Stub so the app helper's branch works on its own: the phone helper's web/phone.js replaces it at merge.
export async function startPhoneCamera() {
  throw new Error('phone camera not available in this build');
}
