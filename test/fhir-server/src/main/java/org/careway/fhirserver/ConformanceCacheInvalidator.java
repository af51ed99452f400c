package org.careway.fhirserver;

import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.transaction.support.TransactionSynchronization;
import org.springframework.transaction.support.TransactionSynchronizationManager;

import java.util.Set;

/**
 * Clears the validation-support caches whenever a StructureDefinition, ValueSet or CodeSystem is
 * created, updated or deleted.
 *
 * <p>WHY: HAPI's validation chain caches lookups by canonical URL for 10 minutes, including
 * negative ones ("no such profile"), and HAPI itself only invalidates on a StructureDefinition
 * <em>update</em>. Without this, a {@code $validate} issued before a profile (or its ValueSet /
 * CodeSystem) is uploaded keeps failing for 10 minutes, and a CodeSystem changed in place keeps
 * its old codes. Tests upload profiles at will, so we trade a little validation speed right after
 * an upload for predictable behaviour.</p>
 *
 * <p>The caches are cleared after the transaction commits, so a concurrent validation cannot
 * re-cache the old state from a not-yet-committed database.</p>
 */
@Interceptor
public class ConformanceCacheInvalidator {
	private static final Logger ourLog = LoggerFactory.getLogger(ConformanceCacheInvalidator.class);
	private static final Set<String> CONFORMANCE_TYPES = Set.of("StructureDefinition", "ValueSet", "CodeSystem");

	private final IValidationSupport myValidationSupport;

	public ConformanceCacheInvalidator(IValidationSupport theValidationSupport) {
		myValidationSupport = theValidationSupport;
	}

	@Hook(Pointcut.STORAGE_PRECOMMIT_RESOURCE_CREATED)
	public void created(IBaseResource theResource) {
		maybeInvalidate(theResource);
	}

	@Hook(Pointcut.STORAGE_PRECOMMIT_RESOURCE_UPDATED)
	public void updated(IBaseResource theOldResource, IBaseResource theNewResource) {
		maybeInvalidate(theNewResource);
	}

	@Hook(Pointcut.STORAGE_PRECOMMIT_RESOURCE_DELETED)
	public void deleted(IBaseResource theResource) {
		maybeInvalidate(theResource);
	}

	private void maybeInvalidate(IBaseResource theResource) {
		if (theResource == null) {
			return;
		}
		String type = theResource.fhirType();
		if (!CONFORMANCE_TYPES.contains(type)) {
			return;
		}
		if (TransactionSynchronizationManager.isSynchronizationActive()) {
			TransactionSynchronizationManager.registerSynchronization(new TransactionSynchronization() {
				@Override
				public void afterCommit() {
					invalidate(type);
				}
			});
		} else {
			invalidate(type);
		}
	}

	private void invalidate(String theType) {
		ourLog.debug("{} changed: invalidating validation caches", theType);
		myValidationSupport.invalidateCaches();
	}
}
