import { ApiError } from '../api/client'

/** A refused request, next to the form that sent it; 429 and 503 go to the page's banner instead. */
export function ErrorMessage({ id, error }: { id?: string; error: unknown }) {
  if (!error || isBusy(error)) return null
  const apiError = error instanceof ApiError ? error : undefined
  return (
    <div id={id} role="alert" className="error">
      <p>{apiError?.message ?? 'The server could not be reached. Check your connection and try again.'}</p>
      {apiError && apiError.fieldErrors.length > 0 && (
        <ul>
          {apiError.fieldErrors.map((text) => (
            <li key={text}>{text}</li>
          ))}
        </ul>
      )}
    </div>
  )
}

export const isBusy = (error: unknown): error is ApiError =>
  error instanceof ApiError && (error.status === 429 || error.status === 503)
