import { useId, useRef, useState, type FormEvent, type ReactNode } from 'react'
import type { NewUser } from '../api/client'
import { ErrorMessage } from './ErrorMessage'

interface UserFormProps {
  label: string
  initial?: NewUser
  pending: boolean
  error: unknown
  /** Resolves true when the server accepted the user. */
  onSubmit(user: NewUser): Promise<boolean>
  /** The form's buttons; the first should submit it. */
  children: ReactNode
  onEscape?(): void
  resetOnSuccess?: boolean
}

/** Name and email fields, shared by the create form and the edit-in-place row. */
export function UserForm({ label, initial, pending, error, onSubmit, children, onEscape, resetOnSuccess }: UserFormProps) {
  const [name, setName] = useState(initial?.name ?? '')
  const [email, setEmail] = useState(initial?.email ?? '')
  const nameField = useRef<HTMLInputElement>(null)
  const id = useId()
  const errorId = `${id}-error`
  const hasError = Boolean(error)

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    if (pending) return
    if ((await onSubmit({ name, email })) && resetOnSuccess) {
      setName('')
      setEmail('')
      nameField.current?.focus()
    }
  }

  return (
    <form
      aria-label={label}
      className="user-form"
      onSubmit={submit}
      onKeyDown={(event) => {
        if (event.key === 'Escape' && onEscape) onEscape()
      }}
    >
      <div className="field">
        <label htmlFor={`${id}-name`}>Name</label>
        <input
          ref={nameField}
          id={`${id}-name`}
          value={name}
          onChange={(event) => setName(event.target.value)}
          required
          maxLength={100}
          autoComplete="off"
          autoFocus={initial !== undefined}
          aria-describedby={hasError ? errorId : undefined}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-email`}>Email</label>
        <input
          id={`${id}-email`}
          type="email"
          value={email}
          onChange={(event) => setEmail(event.target.value)}
          required
          maxLength={254}
          autoComplete="off"
          aria-describedby={hasError ? errorId : undefined}
        />
      </div>
      <div className="actions">{children}</div>
      <ErrorMessage id={errorId} error={error} />
    </form>
  )
}
