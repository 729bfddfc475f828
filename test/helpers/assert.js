/** Resolve to the error a promise rejects with; throw when it resolves instead. */
export async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}
