/**
 * Before insert: stops outgoing emails to Contacts and Leads that opted out of email (no callout: a trigger
 * cannot make one while the record is saved). After insert: has the emails that went out checked by the gate,
 * in a Queueable, so that they are logged. See EmailMessageUnsubscribeGuard.
 */
trigger EmailMessageUnsubscribeGate on EmailMessage (before insert, after insert) {
    if (Trigger.isBefore) {
        EmailMessageUnsubscribeGuard.blockOptedOut(Trigger.new);
    } else {
        EmailMessageUnsubscribeGuard.checkAfterSend(Trigger.new);
    }
}
