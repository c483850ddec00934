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
    dialog.current?.showModal()
    return () => {
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus()
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
