"""PS3.15 Annex E, Table E.1-1: the Basic Application Level Confidentiality Profile, as data.

Attributes are named by their pydicom keyword (checked against pydicom's data dictionary by the
tests), grouped by the action Lungmark takes. Where the standard offers a choice (X/Z, Z/D, X/Z/D)
the attribute is emptied rather than given a dummy value: the stored copy is for annotation and
training, not for sending back to a PACS, so an empty Type 1 value somewhere is acceptable while an
invented one would be misleading.

Attributes that the table marks U (UIDs) are not listed: every UI element that is not a well-known
class UID is replaced, table or not (see ``deidentify.py``). Likewise every date, time, person name,
private, curve and overlay element is removed by rule, so missing one here is not a leak.
Transcribed from the 2024b edition of the standard.
"""
from __future__ import annotations

# Z, Z/D, X/Z and X/Z/D: kept as a zero-length value, so IODs where they are Type 2 stay valid.
EMPTY: frozenset[str] = frozenset(
    """
    AccessionNumber AcquisitionContextSequence AcquisitionDate AcquisitionDateTime
    AcquisitionTime BarcodeValue CalibrationDateTime ClinicalTrialCoordinatingCenterName
    ClinicalTrialProtocolName ClinicalTrialSiteID ClinicalTrialSiteName
    ClinicalTrialTimePointID ConceptualVolumeCombinationDescription ConceptualVolumeDescription
    ConsultingPhysicianName ContentCreatorName ContentDate ContentTime ContrastBolusAgent
    DeviceAlternateIdentifier DeviceSerialNumber FillerOrderNumberImagingServiceRequest
    FractionationNotes InstanceCreationTime InstitutionCodeSequence InstitutionName
    InstructionPerformedDateTime IssuerOfTheContainerIdentifierSequence
    IssuerOfTheSpecimenIdentifierSequence LabelText ManufacturerDeviceIdentifier OperatorsName
    ParticipationDateTime PatientBirthDate PatientSex PatientSexNeutered
    PlacerOrderNumberImagingServiceRequest PrescriptionNotes PrescriptionNotesSequence
    ROIInterpreter ROIName RTAccessoryDeviceSlotID RTAccessoryHolderSlotID
    RTPhysicianIntentNarrative RadiationGenerationModeDescription ReasonForSuperseding
    ReferencedPerformedProcedureStepSequence ReferencedStudySequence ReferringPhysicianName
    RequestedProcedureDescription ReviewDate ReviewTime ReviewerName SourceOfPreviousValues
    SourceSerialNumber SpecimenPreparationSequence StationName StructureSetDate
    StructureSetTime StudyDate StudyID StudyTime TreatmentMachineName TreatmentTechniqueNotes
    VerifyingObserverIdentificationCodeSequence
    """.split()
)

# X, X/D and D: removed. (D attributes are Type 1 only in IODs that Lungmark never stores.)
REMOVE: frozenset[str] = frozenset(
    """
    AcquisitionComments AcquisitionDeviceProcessingDescription AcquisitionFieldOfViewLabel
    AcquisitionProtocolDescription ActualHumanPerformersSequence AdditionalPatientHistory
    AddressTrial AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence
    AdmittingDiagnosesDescription AdmittingTime AffectedSOPInstanceUID Allergies
    AnnotationGroupDescription AnnotationGroupLabel AnnotationGroupUID ApprovalStatusDateTime
    Arbitrary AssertionDateTime AssertionExpirationDateTime AttributeModificationDateTime
    AuthorObserverSequence BeamDescription BeamHoldTransitionDateTime BolusDescription
    BranchOfService CalibrationDate CalibrationTime CameraOwnerName CassetteID
    CertificateOfSigner CertifiedTimestamp ClinicalTrialProtocolEthicsCommitteeApprovalNumber
    ClinicalTrialProtocolEthicsCommitteeName ClinicalTrialProtocolID
    ClinicalTrialSeriesDescription ClinicalTrialSeriesID ClinicalTrialSponsorName
    ClinicalTrialSubjectID ClinicalTrialSubjectReadingID ClinicalTrialTimePointDescription
    CommentsOnRadiationDose CommentsOnThePerformedProcedureStep CompensatorDescription
    ConfidentialityConstraintOnPatientDataDescription ConsultingPhysicianIdentificationSequence
    ContainerComponentID ContainerDescription ContainerIdentifier
    ContentCreatorIdentificationCodeSequence ContentSequence ContextGroupLocalVersion
    ContextGroupVersion ContrastBolusStartTime ContrastBolusStopTime ContributionDateTime
    ContributionDescription CountryOfResidence CreationDate CreationTime CurrentObserverTrial
    CurrentPatientLocation CurveDate CurveTime CustodialOrganizationSequence
    DataSetTrailingPadding Date DateOfDocumentOrVerbalTransactionTrial DateOfInstallation
    DateOfLastCalibration DateOfLastDetectorCalibration DateOfManufacture
    DateOfSecondaryCapture DateTime DateTimeOfLastCalibration DecayCorrectionDateTime
    DecompositionDescription DerivationDescription DestinationAE DetectorID DeviceDescription
    DeviceLabel DeviceSettingDescription DigitalSignatureDateTime DigitalSignaturesSequence
    DischargeDate DischargeDiagnosisDescription DischargeTime DisplacementReferenceLabel
    DistributionAddress DistributionName DoseReferenceDescription EffectiveDateTime
    EncapsulatedDocument EndAcquisitionDateTime EntityDescription EntityLabel EntityLongLabel
    EntityName EquipmentFrameOfReferenceDescription EthicsCommitteeApprovalEffectivenessEndDate
    EthicsCommitteeApprovalEffectivenessStartDate EthnicGroup ExclusionStartDateTime
    ExpectedCompletionDateTime FilterLookupTableDescription FindingsGroupRecordingDateTrial
    FindingsGroupRecordingTimeTrial FirstTreatmentDate FixationDeviceDescription FlowIdentifier
    FlowIdentifierSequence FractionGroupDescription FrameAcquisitionDateTime FrameComments
    FrameOriginTimestamp FrameReferenceDateTime FunctionalSyncPulse GPSAltitude GPSAltitudeRef
    GPSAreaInformation GPSDOP GPSDateStamp GPSDestBearing GPSDestBearingRef GPSDestDistance
    GPSDestDistanceRef GPSDestLatitude GPSDestLatitudeRef GPSDestLongitude GPSDestLongitudeRef
    GPSDifferential GPSImgDirection GPSImgDirectionRef GPSLatitude GPSLatitudeRef GPSLongitude
    GPSLongitudeRef GPSMapDatum GPSMeasureMode GPSProcessingMethod GPSSatellites GPSSpeed
    GPSSpeedRef GPSStatus GPSTimeStamp GPSTrack GPSTrackRef GPSVersionID GantryID GeneratorID
    GraphicAnnotationSequence HL7DocumentEffectiveTime HangingProtocolCreationDateTime
    HumanPerformerName HumanPerformerOrganization IconImageSequence IdentifyingComments
    ImageComments ImagePresentationComments ImagingServiceRequestComments
    ImpedanceMeasurementDateTime Impressions InformationIssueDateTime InstanceCoercionDateTime
    InstanceCreationDate InstanceOriginStatus InstitutionAddress InstitutionalDepartmentName
    InstitutionalDepartmentTypeCodeSequence InsurancePlanIdentification
    IntendedFractionStartTime IntendedPhaseEndDate IntendedPhaseStartDate
    IntendedRecipientsOfResultsIdentificationSequence InterlockDateTime InterlockDescription
    InterlockOriginDescription InterpretationApprovalDate InterpretationApprovalTime
    InterpretationApproverSequence InterpretationAuthor InterpretationDiagnosisDescription
    InterpretationID InterpretationIDIssuer InterpretationRecordedDate
    InterpretationRecordedTime InterpretationRecorder InterpretationText
    InterpretationTranscriber InterpretationTranscriptionDate InterpretationTranscriptionTime
    InterventionDrugStartTime InterventionDrugStopTime IssueDateOfImagingServiceRequest
    IssueTimeOfImagingServiceRequest IssuerOfAdmissionID IssuerOfAdmissionIDSequence
    IssuerOfClinicalTrialProtocolID IssuerOfClinicalTrialSeriesID IssuerOfClinicalTrialSiteID
    IssuerOfClinicalTrialSubjectID IssuerOfClinicalTrialSubjectReadingID
    IssuerOfClinicalTrialTimePointID IssuerOfPatientID IssuerOfServiceEpisodeID
    IssuerOfServiceEpisodeIDSequence LastMenstrualDate LensMake LensModel LensSerialNumber
    LensSpecification LongDeviceDescription MAC MakerNote MedicalAlerts MedicalRecordLocator
    MilitaryRank ModifiedAttributesSequence ModifiedImageDate ModifiedImageDescription
    ModifiedImageTime ModifyingDeviceID ModifyingSystem MostRecentTreatmentDate
    MultienergyAcquisitionDescription NameOfPhysiciansReadingStudy
    NamesOfIntendedRecipientsOfResults NetworkID NonconformingDataElementValue
    NonconformingModifiedAttributesSequence ObservationDateTime ObservationDateTrial
    ObservationStartDateTime ObservationTimeTrial Occupation OperatorIdentificationSequence
    OrderCallbackPhoneNumber OrderCallbackTelecomInformation OrderEnteredBy
    OrderEntererLocation OriginalAttributesSequence Originator
    OtherClinicalTrialProtocolIDsSequence OtherPatientIDs OtherPatientIDsSequence
    OtherPatientNames OverlayDate OverlayTime OverrideDateTime ParticipantSequence
    PatientAddress PatientAge PatientBirthName PatientBirthTime PatientComments
    PatientInstitutionResidence PatientInsurancePlanCodeSequence PatientMotherBirthName
    PatientPrimaryLanguageCodeSequence PatientPrimaryLanguageModifierCodeSequence
    PatientReligiousPreference PatientSetupPhotoDescription PatientSize PatientState
    PatientTelecomInformation PatientTelephoneNumbers PatientTransportArrangements
    PatientTreatmentPreparationMethodDescription
    PatientTreatmentPreparationProcedureParameterDescription PatientWeight PerformedLocation
    PerformedProcedureStepDescription PerformedProcedureStepEndDate
    PerformedProcedureStepEndDateTime PerformedProcedureStepEndTime PerformedProcedureStepID
    PerformedProcedureStepStartDate PerformedProcedureStepStartDateTime
    PerformedProcedureStepStartTime PerformedStationAETitle
    PerformedStationGeographicLocationCodeSequence PerformedStationName
    PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
    PerformingPhysicianName PersonAddress PersonIdentificationCodeSequence PersonName
    PersonTelecomInformation PersonTelephoneNumbers PhysicianApprovingInterpretation
    PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
    PhysiciansReadingStudyIdentificationSequence PlateID PositionAcquisitionTemplateDescription
    PositionAcquisitionTemplateName PreMedication PregnancyStatus PrescriptionDescription
    PresentationCreationDate PresentationCreationTime PriorTreatmentDoseDescription
    ProcedureStepCancellationDateTime ProductExpirationDateTime ProtocolName PyramidDescription
    PyramidLabel ROICreatorSequence ROIDateTime ROIDescription ROIGenerationDescription
    ROIInterpreterSequence ROIObservationDateTime ROIObservationDescription ROIObservationLabel
    RTPlanDate RTPlanDescription RTPlanLabel RTPlanName RTPlanTime RTPrescriptionLabel
    RTToleranceSetLabel RTTreatmentApproachLabel RadiationDoseIdentificationLabel
    RadiationDoseInVivoMeasurementLabel RadiationGenerationModeLabel
    RadiopharmaceuticalStartDateTime RadiopharmaceuticalStartTime
    RadiopharmaceuticalStopDateTime RadiopharmaceuticalStopTime ReasonForOmissionDescription
    ReasonForRequestedProcedureCodeSequence ReasonForStudy ReasonForTheAttributeModification
    ReasonForTheImagingServiceRequest ReasonForTheRequestedProcedure ReasonForVisit
    ReasonForVisitCodeSequence ReceivingAE RecordedRTControlPointDateTime ReferencedDateTime
    ReferencedDigitalSignatureSequence ReferencedPatientAliasSequence
    ReferencedPatientPhotoSequence ReferencedPatientSequence ReferencedSOPInstanceMACSequence
    ReferringPhysicianAddress ReferringPhysicianIdentificationSequence
    ReferringPhysicianTelephoneNumbers RegionOfResidence RequestAttributesSequence
    RequestedContrastAgent RequestedProcedureComments RequestedProcedureID
    RequestedProcedureLocation RequestedSeriesDescription RequestingAE RequestingPhysician
    RequestingService RespiratoryMotionCompensationTechniqueDescription ResponsibleOrganization
    ResponsiblePerson ResultsComments ResultsDistributionListSequence ResultsID ResultsIDIssuer
    RetrieveAETitle SOPAuthorizationDateTime SafePositionExitDate SafePositionExitTime
    SafePositionReturnDate SafePositionReturnTime ScheduledAdmissionDate ScheduledAdmissionTime
    ScheduledDischargeDate ScheduledDischargeTime ScheduledHumanPerformersSequence
    ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianIdentificationSequence
    ScheduledPerformingPhysicianName ScheduledProcedureStepDescription
    ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime
    ScheduledProcedureStepExpirationDateTime ScheduledProcedureStepID
    ScheduledProcedureStepLocation ScheduledProcedureStepModificationDateTime
    ScheduledProcedureStepStartDate ScheduledProcedureStepStartDateTime
    ScheduledProcedureStepStartTime ScheduledStationAETitle
    ScheduledStationGeographicLocationCodeSequence ScheduledStationName
    ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
    ScheduledStudyStartDate ScheduledStudyStartTime ScheduledStudyStopDate
    ScheduledStudyStopTime SelectorAEValue SelectorASValue SelectorDAValue SelectorDTValue
    SelectorLOValue SelectorLTValue SelectorOBValue SelectorPNValue SelectorSHValue
    SelectorSTValue SelectorTMValue SelectorUNValue SelectorURValue SelectorUTValue SeriesDate
    SeriesDescription SeriesTime ServiceEpisodeDescription ServiceEpisodeID
    SetupTechniqueDescription ShieldingDeviceDescription SlideIdentifier SmokingStatus
    SourceEndDateTime SourceIdentifier SourceManufacturer SourceStartDateTime
    SourceStrengthReferenceDate SourceStrengthReferenceTime SpecialNeeds
    SpecimenAccessionNumber SpecimenDetailedDescription SpecimenIdentifier
    SpecimenShortDescription StartAcquisitionDateTime StationAETitle StructureSetDescription
    StructureSetLabel StructureSetName StudyArrivalDate StudyArrivalTime StudyComments
    StudyCompletionDate StudyCompletionTime StudyDescription StudyIDIssuer StudyReadDate
    StudyReadTime StudyVerifiedDate StudyVerifiedTime SubstanceAdministrationDateTime
    TelephoneNumberTrial TemplateLocalVersion TemplateVersion TextComments TextString Time
    TimeOfDocumentCreationOrVerbalTransactionTrial TimeOfLastCalibration
    TimeOfLastDetectorCalibration TimeOfSecondaryCapture TimezoneOffsetFromUTC TopicAuthor
    TopicKeywords TopicSubject TopicTitle TransducerIdentificationSequence
    TreatmentControlPointDate TreatmentControlPointTime TreatmentDate
    TreatmentPositionGroupLabel TreatmentSite TreatmentSites TreatmentTime
    TreatmentToleranceViolationDateTime TreatmentToleranceViolationDescription UDISequence
    UniqueDeviceIdentifier UserContentLabel UserContentLongLabel
    VerbalSourceIdentifierCodeSequenceTrial VerbalSourceTrial VerificationDateTime
    VerifyingObserverName VerifyingObserverSequence VerifyingOrganization VisitComments
    WaveformFilterDescription XRayDetectorID XRayDetectorLabel XRaySourceID
    """.split()
)

# X/Z/U*: kept; their items are cleaned like the top level (UIDs replaced, text removed).
CLEAN: frozenset[str] = frozenset(
    """
    ReferencedImageSequence SourceImageSequence
    """.split()
)
