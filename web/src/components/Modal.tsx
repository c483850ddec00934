import { useEffect, useId, useRef, type ReactNode } from 'react'

interface ModalProps {
  title: string
  /** Escape and the Cancel button both call this. */
  onCancel(): void
  children: ReactNode
}

/** A native modal <dialog>: the browser traps focus and makes the rest of the page inert. */
export function Modal({ title, onCancel, children }: ModalProps) {
  const dialog = useRef<HTMLDialogElement>(null)
  const titleId = useId()
  useEffect(() => {
    const opener = document.activeElement
    if (!dialog.current?.open) dialog.current?.showModal()
    return () => {
      // The opener is gone when its row was deleted: focus then goes back to the list.
      const target = opener instanceof HTMLElement && opener.isConnected ? opener : document.getElementById('list-heading')
      target?.focus()
    }
  }, [])
  return (
    <dialog
      ref={dialog}
      aria-labelledby={titleId}
      onCancel={(event) => {
        event.preventDefault()
        onCancel()
      }}
    >
      <h2 id={titleId}>{title}</h2>
      {children}
    </dialog>
  )
}
