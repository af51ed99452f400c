package org.careway.fhirserver;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.jpa.subscription.match.matcher.subscriber.SubscriptionCriteriaParser;
import ca.uhn.fhir.jpa.subscription.match.registry.ActiveSubscription;
import ca.uhn.fhir.jpa.subscription.match.registry.SubscriptionRegistry;
import ca.uhn.fhir.jpa.subscription.model.ResourceModifiedMessage;

import org.hl7.fhir.instance.model.api.IBaseResource;

import java.util.Arrays;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;

/**
 * Lets a change into HAPI's subscription pipeline only when a subscription could match its type.
 *
 * <p>WHY: HAPI 8.8 checks its subscription registry only at the very end. Every create, update and
 * delete of any type first writes a row to HFJ_RESOURCE_MODIFIED inside the request's transaction;
 * a poller deletes it again, and a matching thread reads the resource back and parses it, even with
 * no Subscription on the server. On a loaded 2-core machine that was a large share of HAPI's CPU
 * for writes nobody subscribes to (AuditEvents, Provenance, Communications, Patients). The
 * {@code SUBSCRIPTION_RESOURCE_MODIFIED} hook runs in the request thread before that row is
 * written; returning false ends the pipeline for that change.</p>
 *
 * <p>What passes: Subscription resources (activation and registration need them); every type
 * named by a subscription in HAPI's registry (one without plain criteria, a {@code [*]} one or a
 * topic one lets everything through); every type named by a Subscription written since this server
 * started, from the moment it is written, because the registry learns of it only seconds later and
 * HAPI would have matched the changes made in between; and the types Careway subscribes to
 * ({@link #ALWAYS}, or HAPI_SUBSCRIBED_TYPES), so its hooks never depend on that timing. A type
 * stays let through after its subscription is removed (until a restart): only the saving is lost.
 * HAPI_SUBSCRIPTION_FILTER=off restores HAPI's default.</p>
 */
@Interceptor
public class SubscriptionTypeFilter {
	/** The types Careway's REST hooks watch (src/reminders/subscription.ts). */
	static final Set<String> ALWAYS = Set.of("Appointment", "CarePlan", "Encounter");

	private final SubscriptionRegistry myRegistry;
	private final FhirContext myContext;
	private final Set<String> myAlways;
	/** Types named by Subscriptions written since start-up. */
	private final Set<String> mySeen = ConcurrentHashMap.newKeySet();
	/** Set once a Subscription was written whose criteria could match any type. */
	private volatile boolean myAllTypes;

	SubscriptionTypeFilter(SubscriptionRegistry theRegistry, FhirContext theContext, Set<String> theAlways) {
		myRegistry = theRegistry;
		myContext = theContext;
		myAlways = theAlways;
	}

	/** The filter as configured, or null with HAPI_SUBSCRIPTION_FILTER=off. */
	static SubscriptionTypeFilter fromEnvironment(SubscriptionRegistry theRegistry, FhirContext theContext) {
		if ("off".equalsIgnoreCase(System.getenv("HAPI_SUBSCRIPTION_FILTER"))) {
			return null;
		}
		String types = System.getenv("HAPI_SUBSCRIBED_TYPES");
		Set<String> always = types == null || types.isBlank()
				? ALWAYS
				: Arrays.stream(types.split(",")).map(String::trim).filter(s -> !s.isEmpty()).collect(Collectors.toSet());
		return new SubscriptionTypeFilter(theRegistry, theContext, always);
	}

	@Hook(Pointcut.STORAGE_PRECOMMIT_RESOURCE_CREATED)
	public void created(IBaseResource theResource) {
		remember(theResource);
	}

	@Hook(Pointcut.STORAGE_PRECOMMIT_RESOURCE_UPDATED)
	public void updated(IBaseResource theOldResource, IBaseResource theNewResource) {
		remember(theNewResource);
	}

	private void remember(IBaseResource theResource) {
		if (theResource == null || !"Subscription".equals(theResource.fhirType())) {
			return;
		}
		String criteria = myContext.newTerser().getSinglePrimitiveValueOrNull(theResource, "criteria");
		SubscriptionCriteriaParser.SubscriptionCriteria parsed;
		try {
			parsed = criteria == null || criteria.isBlank() ? null : SubscriptionCriteriaParser.parse(criteria);
		} catch (RuntimeException e) {
			// Criteria HAPI's own parser cannot read: never fail the write over it, just stop filtering.
			parsed = null;
		}
		if (parsed == null
				|| parsed.getType() == SubscriptionCriteriaParser.TypeEnum.STARTYPE_EXPRESSION
				|| parsed.getApplicableResourceTypes() == null) {
			myAllTypes = true;
		} else {
			mySeen.addAll(parsed.getApplicableResourceTypes());
		}
	}

	@Hook(Pointcut.SUBSCRIPTION_RESOURCE_MODIFIED)
	public boolean resourceModified(ResourceModifiedMessage theMessage) {
		// The type comes from the message's id: nothing is parsed here.
		String type = theMessage.getResourceType(myContext);
		if (myAllTypes
				|| type == null
				|| "Subscription".equals(type)
				|| myAlways.contains(type)
				|| mySeen.contains(type)) {
			return true;
		}
		for (ActiveSubscription active : myRegistry.getAll()) {
			SubscriptionCriteriaParser.SubscriptionCriteria criteria = active.getCriteria();
			if (criteria == null
					|| criteria.getType() == SubscriptionCriteriaParser.TypeEnum.STARTYPE_EXPRESSION
					|| criteria.getApplicableResourceTypes() == null
					|| criteria.getApplicableResourceTypes().contains(type)) {
				return true;
			}
		}
		return false;
	}
}
